/**
 * `morris serve` as a real process while Slack's Web API refuses connections (an outage, a
 * network hiccup at boot): the port opens at once, /healthz says Slack is retrying, and when
 * Slack comes back `/morris` works without a restart. The log never shows a secret.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { prepareTinyRoot, tinyEnv, waitFor } from '../jobs/helpers.ts';
import { FakeSlack, postSigned, slashCommand } from './fakes/slack-server.ts';
import { runMorris } from '../morris-cli.ts';

const SECRET = 'down-secret';
const TOKEN = 'down-admin-token-0123456789';
const BOT_TOKEN = 'xoxb-down-bot-token';

/** Polls an async condition (tests/jobs/helpers' waitFor takes a synchronous one). */
async function until<T>(fn: () => Promise<T | null>, timeoutMs: number): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v !== null) return v;
    if (Date.now() - t0 > timeoutMs) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as net.AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'morris-slack-down-'));
const fake = new FakeSlack();
afterAll(async () => {
  await fake.stop().catch(() => undefined);
  fs.rmSync(root, { recursive: true, force: true });
});

it('serve opens its port at once with Slack unreachable, reports it retrying, and answers /morris once Slack is back', async () => {
  await prepareTinyRoot(root);
  const slackPort = await freePort();
  const env = tinyEnv(root, {
    SLACK_BOT_TOKEN: BOT_TOKEN,
    SLACK_SIGNING_SECRET: SECRET,
    SLACK_API_URL: `http://127.0.0.1:${slackPort}/api/`,
    MORRIS_ADMIN_TOKEN: TOKEN,
    MORRIS_COLUMNIST: 'Down Columnist',
    LOG_LEVEL: 'debug',
  });
  const t0 = Date.now();
  const proc = spawn(process.execPath, ['bin/morris.mjs', 'serve', '--port', '0', '--host', '127.0.0.1'], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  proc.stdout!.on('data', (d: Buffer) => (log += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const exited = new Promise((r) => proc.once('exit', r));
  try {
    const url = await waitFor(() => /"dashboard":"(http:\/\/[^"]+)"/.exec(log)?.[1], 20_000);
    const health = async () => (await (await fetch(`${url}/healthz`)).json()) as { platforms: Record<string, string> };
    await until(async () => ((await health()).platforms.slack === 'retrying' ? true : null), 10_000);
    expect(Date.now() - t0).toBeLessThan(15_000);
    // The dashboard shows the same state; `morris status` too.
    const status = await (await fetch(`${url}/api/status`, { headers: { authorization: `Bearer ${TOKEN}` } })).json();
    expect(status.bots).toEqual([expect.objectContaining({ platform: 'slack', state: 'retrying', detail: expect.stringMatching(/auth\.test/) })]);
    const port = new URL(url).port;
    // Asynchronously: a blocked event loop would let fetch reuse a keep-alive socket the server closed meanwhile.
    const cli = await runMorris(['status'], { env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env, PORT: port, LOG_LEVEL: 'warn' }, cwd: process.cwd() });
    expect(cli.stdout).toContain(`Serve:          answering on port ${port}; bots: slack retrying`);
    // Meanwhile Slack's endpoint says "not yet" rather than dropping events.
    const early = await postSigned(`${url}/slack/events`, 'command=%2Fmorris&text=x', { secret: SECRET, contentType: 'application/x-www-form-urlencoded' });
    expect(early.status).toBe(503);

    await fake.start(slackPort);
    await until(async () => ((await health()).platforms.slack === 'connected' ? true : null), 40_000);
    const body = new URLSearchParams(slashCommand(fake, { command: '/morris', text: 'the comeback', user_id: 'U1', channel_id: 'CDOWN' })).toString();
    const ack = await postSigned(`${url}/slack/events`, body, { secret: SECRET, contentType: 'application/x-www-form-urlencoded' });
    expect(ack.status).toBe(200);
    const answer = await waitFor(() => fake.messages.find((m) => m.channel === 'CDOWN' && m.text.includes('Down Columnist')), 60_000);
    expect(answer.text).toMatch(/AI-generated in the style of Down Columnist/);

    // Sign-ins, right and wrong, and a wrong bearer token: none of it puts a secret in the log.
    await fetch(`${url}/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: TOKEN }) });
    await fetch(`${url}/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: `${TOKEN}x` }) });
    await fetch(`${url}/api/status`, { headers: { authorization: `Bearer ${TOKEN}x` } });
  } finally {
    proc.kill('SIGTERM');
    await exited;
  }
  expect(log).toContain('slack bot did not start; retrying in the background');
  expect(log).toMatch(/"bound":"http:\/\/127\.0\.0\.1:\d+"/);
  for (const secret of [TOKEN, SECRET, BOT_TOKEN]) expect(log).not.toContain(secret);
}, 120_000);
