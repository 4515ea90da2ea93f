/**
 * The Slack app manifest Morris needs (paste it at api.slack.com/apps → Create from manifest):
 * the two slash commands, the app_mention event, and the scopes the bot uses. With a public URL
 * it is set up for HTTP mode (POST /slack/events); without one, for Socket Mode.
 */
import { SLACK_EVENTS_PATH } from './slack.ts';

export const SLACK_BOT_SCOPES = ['app_mentions:read', 'chat:write', 'commands'] as const;

export function slackManifest(publicUrl?: string): Record<string, unknown> {
  const eventsUrl = publicUrl ? `${publicUrl.replace(/\/+$/, '')}${SLACK_EVENTS_PATH}` : undefined;
  const command = (name: string, description: string, hint: string) => ({
    command: name,
    description,
    usage_hint: hint,
    should_escape: false,
    ...(eventsUrl ? { url: eventsUrl } : {}),
  });
  return {
    display_information: { name: 'Morris', description: 'Writes columns in one columnist’s style (AI-generated).' },
    features: {
      bot_user: { display_name: 'Morris', always_online: true },
      slash_commands: [
        command('/morris', 'Write a column on a topic', '[--short|--long] [--temp 0.7] <topic>'),
        command('/morris-admin', 'Morris admin commands', 'status | retrain | adapters | promote <id> | rollback | cancel <job> | version'),
      ],
    },
    oauth_config: { scopes: { bot: [...SLACK_BOT_SCOPES] } },
    settings: {
      event_subscriptions: { ...(eventsUrl ? { request_url: eventsUrl } : {}), bot_events: ['app_mention'] },
      interactivity: { is_enabled: false },
      org_deploy_enabled: false,
      socket_mode_enabled: !eventsUrl,
      token_rotation_enabled: false,
    },
  };
}
