/** `morris discord register-commands`, run as the real CLI; the Slack manifest kept in docs/. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SLACK_EVENTS_PATH } from '../../src/bot/slack.ts';
import { APP_ID, FakeDiscord, GUILD_ID } from './fakes/discord-server.ts';
import { runMorris } from '../morris-cli.ts';


describe('morris discord / slack CLI', () => {
  const fake = new FakeDiscord();
  let dir = '';
  beforeAll(async () => {
    await fake.start();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'morris-cli-bots-'));
  });
  afterAll(async () => {
    await fake.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('registers both slash commands in a guild through DISCORD_API_URL', async () => {
    const env = {
      PATH: process.env.PATH,
      HOME: dir,
      MORRIS_DATA_DIR: dir,
      LOG_LEVEL: 'warn',
      DISCORD_TOKEN: 'cli-token',
      DISCORD_APPLICATION_ID: APP_ID,
      DISCORD_API_URL: fake.apiUrl,
    };
    const ok = await runMorris(['discord', 'register-commands', '--guild', GUILD_ID], { cwd: dir, env });
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toBe(`Registered /morris, /morris-admin in guild ${GUILD_ID}.\n`);
    const put = fake.calls.find((c) => c.method === 'PUT')!;
    expect(put.path).toBe(`/applications/${APP_ID}/guilds/${GUILD_ID}/commands`);
    expect((put.body as { name: string }[]).map((c) => c.name)).toEqual(['morris', 'morris-admin']);
    // Without credentials: a clear message and a failing exit code, no request.
    const calls = fake.calls.length;
    const err = await runMorris(['discord', 'register-commands'], {
      cwd: dir,
      env: { PATH: process.env.PATH, HOME: dir, MORRIS_DATA_DIR: dir, DISCORD_API_URL: fake.apiUrl },
    });
    expect(err.code).toBe(78); // the CLI's exit code for configuration errors
    expect(err.stderr).toMatch(/DISCORD_TOKEN and DISCORD_APPLICATION_ID are needed/);
    expect(fake.calls.length).toBe(calls);
  });

  it('docs/slack-app-manifest.yml asks Slack for exactly what the bot handles', () => {
    const manifest = fs.readFileSync(path.resolve('docs/slack-app-manifest.yml'), 'utf8');
    expect([...manifest.matchAll(/- command: (\S+)/g)].map((m) => m[1])).toEqual(['/morris', '/morris-admin']);
    const urls = [...manifest.matchAll(/(?:url|request_url): (\S+)/g)].map((m) => new URL(m[1]!).pathname);
    expect(urls.length).toBe(4);
    // The feedback buttons and the edit form reach the bot only with interactivity on.
    expect(manifest).toMatch(/interactivity:\s*\n(\s*#.*\n)?\s*is_enabled: true\s*\n\s*request_url: /);
    for (const u of urls) expect(u).toBe(SLACK_EVENTS_PATH);
    expect(manifest).toMatch(/bot_events:\s*\n\s*- app_mention\s*\n/);
    for (const scope of ['app_mentions:read', 'chat:write', 'commands']) expect(manifest).toContain(`- ${scope}`);
  });
});
