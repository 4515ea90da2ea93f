/**
 * Reader feedback on Slack. A finished article's last message is Block Kit: the text in sections,
 * a context block with its lineage, 👍/👎 as `feedback_buttons` in a `context_actions` block, and
 * an actions block with Regenerate and Suggest an edit. Each control has its own named handler
 * (Bolt's `app.action` / `app.view`); whoever clicks is recorded. Requests reach these handlers
 * only through slack.ts's signature and replay checks, like every other Slack request.
 */
import type { App } from '@slack/bolt';
import type { WebClient } from '@slack/web-api';
import { childLog } from '../log.ts';
import type { BotCore } from './core.ts';
import { articleInputs, FEEDBACK_LABELS, joinArticleInputs, lineageLine, SLACK_INPUT_MAX_CHARS, SLACK_MODAL_MAX_INPUTS } from './feedback-ui.ts';
import { splitMessage } from './render.ts';
import { afterNotice } from './stream-reply.ts';
import type { FinalUpdate } from './stream-reply.ts';
import type { ReplyUpdate, Requester } from './types.ts';

const logger = childLog('slack-feedback');

/** A section block's text holds at most 3,000 characters. */
export const SLACK_SECTION_MAX_CHARS = 3000;
export const SLACK_ACTION_IDS = { rate: 'morris_rate', regenerate: 'morris_regenerate', edit: 'morris_edit', details: 'morris_details' } as const;
export const SLACK_EDIT_VIEW_ID = 'morris_edit_view';
/** The one action id of every input in the edit view (inputs differ by block id `part-N`). */
const EDIT_INPUT_ACTION = 'text';

/** The blocks of an article's last message: its text, lineage, then the feedback controls. */
export function slackArticleBlocks(mrkdwn: string, final: FinalUpdate, columnist: string) {
  return [
    ...splitMessage(mrkdwn, SLACK_SECTION_MAX_CHARS).map((text) => ({ type: 'section', text: { type: 'mrkdwn', text } })),
    ...slackFeedbackBlocks(final, columnist),
  ];
}

/**
 * What follows an article's text: lineage, then the feedback controls. On their own they end a
 * chat stream (chat.stopStream appends blocks under the streamed text).
 */
export function slackFeedbackBlocks(final: FinalUpdate, columnist: string) {
  const g = final.generationId;
  return [
    { type: 'context', elements: [{ type: 'plain_text', text: lineageLine(columnist, final.lineage), emoji: true }] },
    {
      type: 'context_actions',
      elements: [
        {
          type: 'feedback_buttons',
          action_id: SLACK_ACTION_IDS.rate,
          positive_button: { text: { type: 'plain_text', text: FEEDBACK_LABELS.up }, accessibility_label: 'Good article', value: `up:${g}` },
          negative_button: { text: { type: 'plain_text', text: FEEDBACK_LABELS.down }, accessibility_label: 'Poor article', value: `down:${g}` },
        },
      ],
    },
    {
      type: 'actions',
      block_id: 'morris_feedback',
      elements: [
        { type: 'button', action_id: SLACK_ACTION_IDS.regenerate, text: { type: 'plain_text', text: FEEDBACK_LABELS.regen }, value: g },
        { type: 'button', action_id: SLACK_ACTION_IDS.edit, text: { type: 'plain_text', text: FEEDBACK_LABELS.edit }, value: g },
        { type: 'button', action_id: SLACK_ACTION_IDS.details, text: { type: 'plain_text', text: FEEDBACK_LABELS.details }, value: g },
      ],
    },
  ];
}

/** The edit form: the article in multiline inputs of at most 3,000 characters each. */
export function slackEditView(generationId: string, article: string) {
  const parts = articleInputs(article, SLACK_INPUT_MAX_CHARS, SLACK_MODAL_MAX_INPUTS);
  return {
    type: 'modal' as const,
    callback_id: SLACK_EDIT_VIEW_ID,
    private_metadata: generationId,
    title: { type: 'plain_text' as const, text: 'Suggest an edit' },
    submit: { type: 'plain_text' as const, text: 'Send' },
    close: { type: 'plain_text' as const, text: 'Cancel' },
    blocks: parts.map((value, n) => ({
      type: 'input' as const,
      block_id: `part-${n}`,
      optional: n > 0,
      label: { type: 'plain_text' as const, text: parts.length === 1 ? 'The article, as you would have it' : `Part ${n + 1} of ${parts.length}` },
      element: { type: 'plain_text_input' as const, action_id: EDIT_INPUT_ACTION, multiline: true, initial_value: value, max_length: SLACK_INPUT_MAX_CHARS },
    })),
  };
}

/** A short modal that replaces the edit form once it is recorded. */
function receiptView(text: string) {
  return { type: 'modal' as const, title: { type: 'plain_text' as const, text: 'Suggest an edit' }, close: { type: 'plain_text' as const, text: 'Close' }, blocks: [{ type: 'section', text: { type: 'plain_text', text } }] };
}

export interface SlackFeedbackDeps {
  core: BotCore;
  /** Posts and streams a reply in `channel` (a thread when `threadTs` is set), as slack.ts does. */
  deliver(
    client: WebClient,
    channel: string,
    threadTs: string | undefined,
    updates: AsyncIterable<ReplyUpdate>,
    how?: { recipient?: { teamId?: string; userId: string } },
  ): Promise<unknown>;
  track(what: string, work: (signal: AbortSignal) => Promise<void>): void;
}

interface ClickBody {
  user: { id: string; team_id?: string };
  team?: { id: string } | null;
  channel?: { id: string };
  message?: { ts: string; thread_ts?: string };
  trigger_id: string;
}

const clickerOf = (body: ClickBody): Requester => ({ platform: 'slack', userId: body.user.id, channelId: body.channel?.id });

export function registerSlackFeedback(app: App, deps: SlackFeedbackDeps): void {
  const { feedback } = deps.core;

  app.action(SLACK_ACTION_IDS.rate, async function onRate({ ack, body, action, respond }) {
    await ack();
    const m = /^(up|down):(g-[0-9a-f]+)$/.exec((action as { value?: string }).value ?? '');
    if (!m) return;
    const receipt = feedback.rate(clickerOf(body as ClickBody), m[2]!, m[1] === 'up' ? 1 : -1);
    await respond({ response_type: 'ephemeral', replace_original: false, text: receipt.message });
  });

  app.action(SLACK_ACTION_IDS.details, async function onDetails({ ack, action, respond }) {
    await ack();
    const receipt = feedback.details((action as { value?: string }).value ?? '');
    await respond({ response_type: 'ephemeral', replace_original: false, text: receipt.message });
  });

  app.action(SLACK_ACTION_IDS.edit, async function onSuggestEdit({ ack, body, action, client, respond }) {
    await ack();
    const generationId = (action as { value?: string }).value ?? '';
    const article = feedback.article(generationId)?.article;
    if (!article) {
      await respond({ response_type: 'ephemeral', replace_original: false, text: 'That article’s text is not kept, so it cannot be edited here.' });
      return;
    }
    await client.views.open({ trigger_id: (body as ClickBody).trigger_id, view: slackEditView(generationId, article) });
  });

  app.view(SLACK_EDIT_VIEW_ID, async function onEditSubmitted({ ack, body, view }) {
    const values = Object.keys(view.state.values)
      .filter((b) => /^part-\d+$/.test(b))
      .sort((a, b) => Number(a.slice(5)) - Number(b.slice(5)))
      .map((b) => view.state.values[b]?.[EDIT_INPUT_ACTION]?.value ?? '');
    const receipt = feedback.suggestEdit({ platform: 'slack', userId: body.user.id }, view.private_metadata, joinArticleInputs(values));
    await ack({ response_action: 'update', view: receiptView(receipt.message) });
  });

  app.action(SLACK_ACTION_IDS.regenerate, async function onRegenerate({ ack, body, action, client, respond }) {
    await ack();
    const click = body as ClickBody;
    const prepared = await feedback.regenerate(clickerOf(click), (action as { value?: string }).value ?? '');
    if (!prepared.ok) {
      await respond({ response_type: 'ephemeral', replace_original: false, text: prepared.message });
      return;
    }
    const channel = click.channel?.id;
    if (!channel) {
      logger.warn({ generationId: prepared.request.id }, 'regenerate clicked where no channel is known');
      return;
    }
    // The new take goes where the first one is: the same thread, or the channel.
    deps.track('regenerated reply', (signal) =>
      deps
        .deliver(client, channel, click.message?.thread_ts, afterNotice(prepared.ackText, () => prepared.run(signal)), {
          recipient: { teamId: click.team?.id ?? click.user.team_id, userId: click.user.id },
        })
        .then(() => undefined),
    );
  });
}
