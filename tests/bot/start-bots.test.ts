/**
 * startBots as `morris serve` calls it: both platforms from config, each starting on its own in
 * the background; a platform whose credentials are rejected fails for good (no retry loop) while
 * the other keeps running.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { startBots } from '../../src/bot/index.ts';
import { FakeGenerator, articleFor } from './fakes/fake-generator.ts';
import { BOT_ID, FakeDiscord } from './fakes/discord-server.ts';
import { FakeSlack, postSigned, slashCommand } from './fakes/slack-server.ts';
import { tempStore, waitFor } from './helpers.ts';

describe('startBots', () => {
  const slack = new FakeSlack();
  const discord = new FakeDiscord();
  const t = tempStore();
  beforeAll(async () => {
    await Promise.all([slack.start(), discord.start()]);
  });
  afterAll(async () => {
    await Promise.all([slack.stop(), discord.stop()]);
    t.cleanup();
  });

  const env = (over: Record<string, string> = {}) =>
    loadConfig({
      MORRIS_DATA_DIR: t.dir,
      SLACK_BOT_TOKEN: 'xoxb-good',
      SLACK_SIGNING_SECRET: 'sekrit',
      SLACK_API_URL: slack.apiUrl,
      DISCORD_TOKEN: 'discord-good',
      DISCORD_API_URL: discord.apiUrl,
      MORRIS_COLUMNIST: 'Config Columnist',
      ...over,
    });

  it('starts Slack (HTTP mode) and Discord over one core; both answer; stop() shuts both', async () => {
    const bots = startBots({ config: env(), store: t.store, generator: new FakeGenerator(), overrides: { editIntervalMs: 50, slackUpdatesPerMinute: 6000, slackRetries: 0 } });
    await bots.settled();
    try {
      expect(bots.platforms()).toEqual({ slack: { state: 'connected', attempts: 1 }, discord: { state: 'connected', attempts: 1 } });
      expect(bots.slack?.mode).toBe('http');
      expect(bots.discord).toBeDefined();
      expect(bots.slackHttpHandler).toBeTypeOf('function');
      const server = http.createServer((req, res) => bots.slackHttpHandler!(req, res));
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const body = new URLSearchParams(slashCommand(slack, { command: '/morris', text: 'from serve', user_id: 'U1', channel_id: 'CSERVE' })).toString();
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/slack/events`;
      expect((await postSigned(url, body, { secret: 'sekrit', contentType: 'application/x-www-form-urlencoded' })).status).toBe(200);
      const m = await waitFor(() => slack.messages.find((x) => x.channel === 'CSERVE' && x.text.includes('not written by them')), 20_000, 'slack answer');
      expect(m.text).toContain('AI-generated in the style of Config Columnist — not written by them');
      const id = discord.userMessage({ author: { id: '710000000000000001', username: 'x' }, content: `<@${BOT_ID}> from serve too`, mentionBot: true });
      const d = await waitFor(() => discord.messages.find((x) => x.reply_to === id && x.content.includes('not written by them')), 20_000, 'discord answer');
      expect(d.content.startsWith(articleFor('from serve too'))).toBe(true);
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    } finally {
      await bots.stop();
    }
    expect(discord.connected).toBe(false);
  });

  it('leaves out a platform whose credentials are rejected and keeps the other', async () => {
    slack.acceptedToken = 'xoxb-good';
    discord.acceptedToken = 'discord-good';
    const bots = startBots({
      config: env({ SLACK_BOT_TOKEN: 'xoxb-revoked' }),
      store: t.store,
      generator: new FakeGenerator(),
      overrides: { slackRetries: 0, retryFirstMs: 20 },
    });
    await bots.settled();
    try {
      expect(bots.platforms().slack).toMatchObject({ state: 'failed', attempts: 1, detail: expect.stringContaining('invalid_auth') });
      expect(bots.platforms().discord.state).toBe('connected');
      expect(bots.discord).toBeDefined();
      // Its events endpoint says "not connected" instead of dropping what Slack sends.
      const server = http.createServer((req, res) => bots.slackHttpHandler!(req, res));
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/slack/events`;
      expect((await postSigned(url, 'command=%2Fmorris&text=x', { secret: 'sekrit', contentType: 'application/x-www-form-urlencoded' })).status).toBe(503);
      await new Promise((r) => server.close(r));
    } finally {
      await bots.stop();
    }
    const noDiscord = startBots({ config: env({ DISCORD_TOKEN: 'discord-revoked' }), store: t.store, generator: new FakeGenerator(), overrides: { slackRetries: 0, retryFirstMs: 20 } });
    await noDiscord.settled();
    try {
      expect(noDiscord.platforms().discord).toMatchObject({ state: 'failed', attempts: 1 });
      expect(noDiscord.discord).toBeUndefined();
      expect(noDiscord.platforms().slack.state).toBe('connected');
      expect(noDiscord.slack?.mode).toBe('http');
    } finally {
      await noDiscord.stop();
    }
    const none = startBots({ config: loadConfig({ MORRIS_DATA_DIR: t.dir }), store: t.store, generator: new FakeGenerator() });
    expect(none.platforms()).toEqual({ slack: { state: 'off', attempts: 0 }, discord: { state: 'off', attempts: 0 } });
    expect(none.slack).toBeUndefined();
    expect(none.discord).toBeUndefined();
    await none.stop();
  });
});
