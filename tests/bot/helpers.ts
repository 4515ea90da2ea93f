import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { BotCore, type CoreSettings } from '../../src/bot/core.ts';
import { SLACK_EVENTS_PATH, type SlackBot } from '../../src/bot/slack.ts';
import type { AdminActions, ReplyUpdate, TextGenerator } from '../../src/bot/types.ts';
import { openStore, type Store } from '../../src/store/db.ts';

export function tempStore(): { store: Store; dir: string; cleanup(): void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'morris-bot-'));
  const store = openStore(path.join(dir, 'morris.db'));
  return {
    store,
    dir,
    cleanup() {
      store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export const TEST_SETTINGS: CoreSettings = {
  maxTopicChars: 300,
  userRateLimitPerMin: 0,
  webRateLimitPerMin: 0,
  blocklist: ['forbidden'],
  slackAdmins: ['UADMIN'],
  discordAdmins: ['100000000000000001', '900000000000000009'],
  defaultMaxNewTokens: 100,
  columnist: 'Test Columnist',
};

export function makeCore(store: Store, generator: TextGenerator, over: Partial<CoreSettings> = {}, admin?: AdminActions): BotCore {
  return new BotCore({ store, generator, admin, settings: { ...TEST_SETTINGS, ...over } });
}

export async function collect<T = ReplyUpdate>(updates: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const u of updates) out.push(u);
  return out;
}

/** AdminActions that record calls and answer with a line naming the action. */
export function recordingAdmin(): AdminActions & { calls: string[] } {
  const calls: string[] = [];
  const act = (name: string) => async (_actor: unknown, arg?: string) => {
    calls.push(arg ? `${name} ${arg}` : name);
    return `${name} ok${arg ? ` (${arg})` : ''}`;
  };
  return {
    calls,
    status: act('status'),
    retrain: act('retrain'),
    rescrape: act('rescrape'),
    rebuild: act('rebuild'),
    adapters: act('adapters'),
    promote: act('promote'),
    rollback: act('rollback'),
    cancel: act('cancel'),
  };
}

export async function waitFor<T>(fn: () => T | undefined | false | null, timeoutMs = 20_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * What `morris serve` does for Slack's HTTP mode: POSTs to /slack/events go to the bot's listener on
 * a 127.0.0.1 port, anything else is 404. `url` is the events URL to post signed payloads to.
 */
export async function serveSlackEvents(bot: SlackBot): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    if (req.method === 'POST' && req.url?.startsWith(SLACK_EVENTS_PATH)) return bot.httpHandler!(req, res);
    res.writeHead(404);
    res.end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}${SLACK_EVENTS_PATH}`,
    async close() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}
