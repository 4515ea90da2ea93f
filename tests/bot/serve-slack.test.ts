/**
 * The bots inside `morris serve` (src/serve/start.ts): Slack HTTP mode answers at POST
 * /slack/events on the serve process's own port, with the real engine on the tiny model and the
 * real admin actions from the job system behind /morris-admin.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { startServe, type ServeHandle } from '../../src/serve/start.ts';
import { initTinyModel } from '../../src/model/tiny/index.ts';
import { FakeSlack, postSigned, slashCommand } from './fakes/slack-server.ts';
import { waitFor } from './helpers.ts';

const SECRET = 'serve-secret';

describe('Slack inside morris serve', () => {
  const fake = new FakeSlack();
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'morris-serve-bot-'));
  let serve: ServeHandle;

  beforeAll(async () => {
    await fake.start();
    const tiny = path.join(root, 'tiny');
    initTinyModel(tiny, { seed: 3 });
    const config = loadConfig({
      MORRIS_DATA_DIR: path.join(root, 'data'),
      MORRIS_MODELS_DIR: path.join(root, 'models'),
      MORRIS_BASE_MODEL: tiny,
      MORRIS_DEVICE: 'cpu',
      MORRIS_THREADS: '1',
      MORRIS_MAX_NEW_TOKENS: '16',
      MORRIS_CRON_RESCRAPE: 'off',
      MORRIS_SHUTDOWN_GRACE_S: '2',
      SLACK_BOT_TOKEN: 'xoxb-serve',
      SLACK_SIGNING_SECRET: SECRET,
      SLACK_API_URL: fake.apiUrl,
      MORRIS_SLACK_ADMINS: 'UADMIN',
      MORRIS_COLUMNIST: 'Serve Columnist',
      LOG_LEVEL: 'warn',
    });
    serve = await startServe({ config, port: 0, host: '127.0.0.1', version: 'test' });
    // Slack connects in the background; the port was open before it did.
    await serve.bots.settled();
  });

  afterAll(async () => {
    await serve?.stop('test done');
    await fake.stop();
    fs.rmSync(root, { recursive: true, force: true });
  });

  const slash = (command: string, text: string, user_id: string, channel_id = 'CSERVE') =>
    postSigned(
      `${serve.url.replace(/\/$/, '')}/slack/events`,
      new URLSearchParams(slashCommand(fake, { command, text, user_id, channel_id })).toString(),
      { secret: SECRET, contentType: 'application/x-www-form-urlencoded' },
    );

  it('/morris on the serve port is answered by the real engine; bad signatures get 401', async () => {
    const bad = await postSigned(`${serve.url.replace(/\/$/, '')}/slack/events`, 'command=%2Fmorris&text=x', {
      secret: 'wrong',
      contentType: 'application/x-www-form-urlencoded',
    });
    expect(bad.status).toBe(401);
    const ack = await slash('/morris', 'the regulator', 'U1');
    expect(ack.status).toBe(200);
    expect(JSON.parse(ack.text).text).toBe('Writing about “the regulator”…');
    const msg = await waitFor(() => fake.messages.find((m) => m.channel === 'CSERVE' && m.text.includes('not written by them')), 60_000, 'answer');
    expect(msg.text).toMatch(/_AI-generated in the style of Serve Columnist — not written by them_$/);
    const row = serve.store.prepare("SELECT outcome, base_model FROM generations WHERE topic = 'the regulator'").get() as { outcome: string };
    expect(row.outcome).toBe('ok');
  });

  it('/morris-admin reaches the job system for admins only, and is audited', async () => {
    const refused = await slash('/morris-admin', 'adapters', 'USOMEONE');
    expect(JSON.parse(refused.text).text).toMatch(/admins only/);
    const adapters = await slash('/morris-admin', 'adapters', 'UADMIN');
    expect(JSON.parse(adapters.text).text).toContain('No adapters yet; the base model answers.');
    const cancel = await slash('/morris-admin', 'cancel 999', 'UADMIN');
    expect(JSON.parse(cancel.text).text).toMatch(/`cancel` failed: No running job #999/);
    const rows = serve.store.prepare('SELECT user_id, command, allowed, outcome FROM audit_log ORDER BY id').all();
    expect(rows).toEqual([
      { user_id: 'USOMEONE', command: 'adapters', allowed: 0, outcome: 'refused: not an admin' },
      { user_id: 'UADMIN', command: 'adapters', allowed: 1, outcome: 'ok' },
      { user_id: 'UADMIN', command: 'cancel', allowed: 1, outcome: expect.stringMatching(/^failed: No running job #999/) },
    ]);
  });
});
