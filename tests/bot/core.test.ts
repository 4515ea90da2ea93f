import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MorrisError } from '../../src/errors.ts';
import { failureText } from '../../src/bot/core.ts';
import { attributionLine } from '../../src/bot/render.ts';
import type { ReplyUpdate } from '../../src/bot/types.ts';
import type { Store } from '../../src/store/db.ts';
import { articleFor, FakeGenerator } from './fakes/fake-generator.ts';
import { collect, makeCore, recordingAdmin, tempStore } from './helpers.ts';

let store: Store;
let cleanup: () => void;
beforeEach(() => {
  ({ store, cleanup } = tempStore());
});
afterEach(() => cleanup());

const slackUser = (userId = 'U1') => ({ platform: 'slack' as const, userId, channelId: 'C1' });

function generationRow(id: string) {
  return store.prepare('SELECT * FROM generations WHERE id = ?').get(id) as Record<string, unknown>;
}

describe('BotCore.prepare', () => {
  it('answers an empty topic with usage help and records nothing', async () => {
    const core = makeCore(store, new FakeGenerator());
    const p = await core.prepare({ requester: slackUser(), text: '   --short  ' });
    expect(p.ok).toBe(false);
    expect(!p.ok && p.message).toMatch(/\/morris <topic>/);
    expect(store.prepare('SELECT count(*) AS n FROM generations').get()).toEqual({ n: 0 });
  });

  it('refuses a 50 kB topic politely and stores only its beginning', async () => {
    const gen = new FakeGenerator();
    const core = makeCore(store, gen);
    const p = await core.prepare({ requester: slackUser(), text: 'x'.repeat(50_000) });
    expect(p.ok).toBe(false);
    expect(!p.ok && p.message).toMatch(/50,000 characters.*under 300/);
    const row = store.prepare('SELECT outcome, length(topic) AS len FROM generations').get();
    expect(row).toEqual({ outcome: 'refused', len: 2000 });
    expect(gen.calls).toHaveLength(0);
  });

  it('parses flags into options and scales max tokens', async () => {
    const gen = new FakeGenerator();
    const core = makeCore(store, gen);
    const p = await core.prepare({ requester: slackUser(), text: '--short the 6G hype —temp 0.3' });
    expect(p.ok && p.request.topic).toBe('the 6G hype');
    expect(p.ok && p.request.options).toEqual({ length: 'short', temperature: 0.3 });
    if (p.ok) await collect(p.run());
    expect(gen.calls[0]).toMatchObject({ maxNewTokens: 40, temperature: 0.3 });
    const bad = await core.prepare({ requester: slackUser(), text: 'x --temp 9' });
    expect(!bad.ok && bad.message).toMatch(/--temp/);
  });

  it('rate-limits each user separately', async () => {
    const core = makeCore(store, new FakeGenerator(), { userRateLimitPerMin: 2 });
    const results = [];
    for (let i = 0; i < 3; i++) results.push(await core.prepare({ requester: slackUser('U1'), text: `topic ${i}` }));
    expect(results.map((r) => r.ok)).toEqual([true, true, false]);
    expect(!results[2]!.ok && results[2]!.message).toMatch(/2 articles a minute/);
    expect((await core.prepare({ requester: slackUser('U2'), text: 'other' })).ok).toBe(true);
    const limited = store.prepare("SELECT count(*) AS n FROM generations WHERE outcome = 'rate_limited'").get();
    expect(limited).toEqual({ n: 1 });
  });

  it('refuses a blocklisted topic without generating', async () => {
    const gen = new FakeGenerator();
    const core = makeCore(store, gen);
    const p = await core.prepare({ requester: slackUser(), text: 'something FORBIDDEN here' });
    expect(p.ok).toBe(false);
    expect(!p.ok && p.message).toMatch(/won't write about/);
    expect(gen.calls).toHaveLength(0);
  });
});

describe('BotCore.precheck / accept', () => {
  it('refuses and records exactly as prepare does, without opening a run', async () => {
    const gen = new FakeGenerator();
    const core = makeCore(store, gen);
    expect(await core.precheck({ requester: slackUser(), text: ' --long ' })).toEqual({ ok: false, reason: 'usage', message: expect.stringMatching(/\/morris <topic>/) });
    const long = await core.precheck({ requester: slackUser(), text: 'x'.repeat(50_000) });
    expect(!long.ok && long.message).toMatch(/50,000 characters/);
    const blocked = await core.precheck({ requester: slackUser(), text: 'forbidden fruit' });
    expect(!blocked.ok && blocked.message).toMatch(/won't write about/);
    expect(store.prepare('SELECT outcome, error FROM generations ORDER BY rowid').all()).toEqual([
      { outcome: 'refused', error: expect.stringMatching(/50,000 characters/) },
      { outcome: 'refused', error: 'blocked term: forbidden' },
    ]);
    const ok = await core.precheck({ requester: slackUser(), text: '--short fibre' });
    expect(ok).toEqual({ ok: true, accepted: { requester: slackUser(), topic: 'fibre', options: { length: 'short' } } });
    // Passing the checks opens nothing: the row appears on accept.
    expect(store.prepare("SELECT count(*) AS n FROM generations WHERE outcome = 'running'").get()).toEqual({ n: 0 });
    expect(gen.calls).toHaveLength(0);
  });

  it('spends one rate-limit token per request, and each accepted request runs once', async () => {
    const gen = new FakeGenerator();
    const core = makeCore(store, gen, { userRateLimitPerMin: 2 });
    const first = await core.precheck({ requester: slackUser('U1'), text: 'topic one' });
    if (!first.ok) throw new Error('expected ok');
    const started = core.accept(first.accepted);
    expect(generationRow(started.request.id)).toMatchObject({ outcome: 'running', topic: 'topic one' });
    expect(() => core.accept(first.accepted)).toThrow(/once/);
    expect(() => core.accept({ requester: slackUser('U1'), topic: 'sneaked in', options: { length: 'medium' } })).toThrow(/precheck/);
    await collect(started.run());
    expect((await core.prepare({ requester: slackUser('U1'), text: 'topic two' })).ok).toBe(true);
    const third = await core.precheck({ requester: slackUser('U1'), text: 'topic three' });
    expect(!third.ok && third.message).toMatch(/2 articles a minute/);
    expect(store.prepare('SELECT topic, outcome FROM generations ORDER BY rowid').all()).toEqual([
      { topic: 'topic one', outcome: 'ok' },
      { topic: 'topic two', outcome: 'running' },
      { topic: 'topic three', outcome: 'rate_limited' },
    ]);
    expect(gen.calls.map((c) => c.topic)).toEqual(['topic one']);
  });
});

describe('BotCore.run', () => {
  it('streams partial text, ends with the article and attribution, and records the generation', async () => {
    const core = makeCore(store, new FakeGenerator());
    const p = await core.prepare({ requester: slackUser(), text: 'late trains' });
    if (!p.ok) throw new Error('expected ok');
    const updates = await collect(p.run());
    const partials = updates.filter((u) => u.kind === 'partial');
    expect(partials.length).toBeGreaterThan(3);
    const final = updates.at(-1) as Extract<ReplyUpdate, { kind: 'final' }>;
    expect(final.kind).toBe('final');
    expect(final.text.startsWith(articleFor('late trains'))).toBe(true);
    expect(final.text).toContain(attributionLine('Test Columnist'));
    const row = generationRow(p.request.id);
    expect(row).toMatchObject({
      outcome: 'ok',
      platform: 'slack',
      user_id: 'U1',
      topic: 'late trains',
      adapter_id: 'a-test-1',
      dataset_id: 'ds-test-1',
      base_model: 'tiny-test',
      n_chars: articleFor('late trains').length,
    });
    expect(row.duration_ms as number).toBeGreaterThanOrEqual(row.ttft_ms as number);
  });

  it('marks a timed-out generation as cut and keeps the partial text', async () => {
    const core = makeCore(store, new FakeGenerator(() => ({ chunkDelayMs: 20, timeoutMs: 100 })));
    const p = await core.prepare({ requester: slackUser(), text: 'slow topic' });
    if (!p.ok) throw new Error('expected ok');
    const final = (await collect(p.run())).at(-1) as Extract<ReplyUpdate, { kind: 'final' }>;
    expect(final.kind).toBe('final');
    expect(final.cut).toBe(true);
    expect(final.text).toMatch(/cut short: the generation hit its time limit/);
    expect(final.text.startsWith('Headline [#')).toBe(true);
    expect(generationRow(p.request.id)).toMatchObject({ outcome: 'cut', error: 'cut: timeout' });
  });

  it('reports a model that fails to load with a reference id, and keeps working', async () => {
    let broken = true;
    const gen = new FakeGenerator(() =>
      broken ? { failOnStart: new MorrisError('MODEL_MISSING', 'No model at /models/x (config.json is missing).') } : {},
    );
    const core = makeCore(store, gen);
    const p = await core.prepare({ requester: slackUser(), text: 'anything' });
    if (!p.ok) throw new Error('expected ok');
    const last = (await collect(p.run())).at(-1)!;
    expect(last).toMatchObject({ kind: 'failed', generationId: p.request.id });
    expect(last.text).toBe(`Sorry, Morris couldn't write that: the model failed to load. (ref \`${p.request.id}\`)`);
    expect(last.text).not.toContain('/models/x'); // details stay in the log and the row
    expect(generationRow(p.request.id)).toMatchObject({ outcome: 'failed' });
    expect(String(generationRow(p.request.id).error)).toMatch(/MODEL_MISSING: No model/);
    broken = false;
    const again = await core.prepare({ requester: slackUser(), text: 'anything' });
    if (!again.ok) throw new Error('expected ok');
    expect((await collect(again.run())).at(-1)!.kind).toBe('final');
  });

  it('maps engine errors to short reasons (busy queue, engine input limits)', () => {
    expect(failureText(new MorrisError('BUSY', 'Too many requests waiting (50).'), 'g-1')).toBe(
      "Sorry, Morris couldn't write that: the queue is full right now; try again in a few minutes. (ref `g-1`)",
    );
    expect(failureText(new MorrisError('BAD_INPUT', 'Topic is 400 characters; the limit is 300.'), 'g-2')).toBe(
      "Sorry, Morris couldn't write that: Topic is 400 characters; the limit is 300. (ref `g-2`)",
    );
    expect(failureText(new Error('segfault at 0xdead'), 'g-3')).toBe("Sorry, Morris couldn't write that: something went wrong. (ref `g-3`)");
  });

  it('withholds generated text that trips the blocklist', async () => {
    const core = makeCore(store, new FakeGenerator(() => ({ text: 'All fine until the forbidden word appears, then more.' })));
    const p = await core.prepare({ requester: slackUser(), text: 'innocent' });
    if (!p.ok) throw new Error('expected ok');
    const updates = await collect(p.run());
    for (const u of updates) expect(u.text.toLowerCase()).not.toContain('forbidden');
    expect(updates.at(-1)).toMatchObject({ kind: 'failed' });
    expect(updates.at(-1)!.text).toMatch(/content filter/);
    expect(generationRow(p.request.id)).toMatchObject({ outcome: 'refused', error: 'output blocked: forbidden' });
  });

  it('reports queue positions to people waiting behind others', async () => {
    const core = makeCore(store, new FakeGenerator(() => ({ chunkDelayMs: 5 })));
    const preps = await Promise.all(
      [1, 2, 3].map((i) => core.prepare({ requester: slackUser(`U${i}`), text: `topic ${i}` })),
    );
    const runs = await Promise.all(preps.map((p) => (p.ok ? collect(p.run()) : Promise.reject(new Error('not ok')))));
    const positions = runs.map((us) =>
      us.filter((u) => u.kind === 'notice' && u.text.startsWith('Queued')).map((u) => Number(/position (\d+)/.exec(u.text)![1])),
    );
    expect(positions[0]).toEqual([]);
    expect(positions[1]).toEqual([1]);
    expect(positions[2]).toEqual([2, 1]);
    runs.forEach((us, i) => expect(us.at(-1)!.text.startsWith(articleFor(`topic ${i + 1}`))).toBe(true));
  });
});

describe('BotCore.admin', () => {
  it('refuses non-admins and audits the attempt', async () => {
    const admin = recordingAdmin();
    const core = makeCore(store, new FakeGenerator(), {}, admin);
    const out = await core.admin({ requester: slackUser('UNOBODY'), text: 'retrain now' });
    expect(out).toMatch(/admins only/);
    expect(admin.calls).toEqual([]);
    expect(store.prepare('SELECT platform, user_id, command, args, allowed, outcome FROM audit_log').all()).toEqual([
      { platform: 'slack', user_id: 'UNOBODY', command: 'retrain', args: 'now', allowed: 0, outcome: 'refused: not an admin' },
    ]);
  });

  it('runs admin commands for admins (Discord by user or role id) and audits them', async () => {
    const admin = recordingAdmin();
    const core = makeCore(store, new FakeGenerator(), {}, admin);
    expect(await core.admin({ requester: slackUser('UADMIN'), text: 'promote a-42' })).toContain('promote ok (a-42)');
    const byRole = { platform: 'discord' as const, userId: '555', roleIds: ['900000000000000009'] };
    expect(await core.admin({ requester: byRole, text: 'cancel 7' })).toContain('cancel ok (7)');
    expect(await core.admin({ requester: byRole, text: 'promote' })).toMatch(/needs an adapter id/);
    const version = await core.admin({ requester: slackUser('UADMIN'), text: 'version' });
    expect(version).toMatch(/adapter: +a-test-1/);
    expect(version).toMatch(/dataset: +ds-test-1/);
    expect(version).toMatch(/base model: tiny-test/);
    expect(await core.admin({ requester: slackUser('UADMIN'), text: 'dance' })).toMatch(/Admin commands:/);
    expect(admin.calls).toEqual(['promote a-42', 'cancel 7']);
    const rows = store.prepare('SELECT command, allowed, outcome FROM audit_log ORDER BY id').all();
    expect(rows).toEqual([
      { command: 'promote', allowed: 1, outcome: 'ok' },
      { command: 'cancel', allowed: 1, outcome: 'ok' },
      { command: 'promote', allowed: 1, outcome: expect.stringMatching(/^failed: .*needs an adapter id/) },
      { command: 'version', allowed: 1, outcome: 'ok' },
      { command: 'dance', allowed: 1, outcome: 'unknown command' },
    ]);
  });
});
