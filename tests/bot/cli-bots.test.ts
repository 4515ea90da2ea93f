/** `morris discord register-commands`, run as the real CLI, and the Slack manifest it prints. */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { slackManifest } from '../../src/bot/slack-manifest.ts';
import { APP_ID, FakeDiscord, GUILD_ID } from './fakes/discord-server.ts';

const run = promisify(execFile);
const BIN = path.resolve('bin/morris.mjs');

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
    const { stdout } = await run(process.execPath, [BIN, 'discord', 'register-commands', '--guild', GUILD_ID], { cwd: dir, env });
    expect(stdout).toBe(`Registered /morris, /morris-admin in guild ${GUILD_ID}.\n`);
    const put = fake.calls.find((c) => c.method === 'PUT')!;
    expect(put.path).toBe(`/applications/${APP_ID}/guilds/${GUILD_ID}/commands`);
    expect((put.body as { name: string }[]).map((c) => c.name)).toEqual(['morris', 'morris-admin']);
    // Without credentials: a clear message and a failing exit code, no request.
    const calls = fake.calls.length;
    const err = await run(process.execPath, [BIN, 'discord', 'register-commands'], {
      cwd: dir,
      env: { PATH: process.env.PATH, HOME: dir, MORRIS_DATA_DIR: dir, DISCORD_API_URL: fake.apiUrl },
    }).catch((e: { code: number; stderr: string }) => e);
    expect((err as { code: number }).code).toBe(78); // the CLI's exit code for configuration errors
    expect((err as { stderr: string }).stderr).toMatch(/DISCORD_TOKEN and DISCORD_APPLICATION_ID are needed/);
    expect(fake.calls.length).toBe(calls);
  });

  it('prints a Slack manifest for HTTP mode with --url, Socket Mode without', () => {
    const m = slackManifest('https://morris.example.com/') as any;
    expect(m.settings.event_subscriptions).toEqual({ request_url: 'https://morris.example.com/slack/events', bot_events: ['app_mention'] });
    expect(m.settings.socket_mode_enabled).toBe(false);
    expect(m.features.slash_commands.map((c: { command: string }) => c.command)).toEqual(['/morris', '/morris-admin']);
    expect((slackManifest() as any).settings.socket_mode_enabled).toBe(true);
  });
});
