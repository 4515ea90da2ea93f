/**
 * Readers in the loop, end to end in one serve process: reader pairs arrive (imported as articles
 * and readers' edits), the per-minute watch sees MORRIS_DPO_MIN_NEW_PAIRS new ones and starts the
 * DPO stage in a worker process (on top of the active adapter: none here, so the base model), the
 * gate measures readers' held-out preference accuracy for the base model and the DPO candidate and
 * promotes or keeps it with that figure in the reason. A second voice's readers' pairs train that
 * voice alone: its own watch, its own reference (its active adapter, not the default voice's), its
 * adapter line and a gate measured on its own held-out pairs.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ServeHandle } from '../../src/serve/start.ts';
import { getLogs, listRuns } from '../../src/store/job-runs.ts';
import { getAdapter } from '../../src/jobs/registry.ts';
import { importDataset } from '../../src/pipeline/dataset/import.ts';
import { importPreferenceLines } from '../../src/pipeline/dataset/preferences.ts';
import { pairsSinceLastDpo } from '../../src/jobs/chain.ts';
import { COLUMNISTS_DIR } from '../../src/paths.ts';
import { QUICK_TRAIN, startTinyServe, waitFor } from './helpers.ts';

let root: string;
let h: ServeHandle;
let close: () => Promise<void>;
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'morris-serve-dpo-voices-'));

const pair = (i: number) =>
  JSON.stringify({
    prompt: [{ role: 'user', content: `Write a column about the ${i}th network sharing deal.` }],
    chosen: [{ role: 'assistant', content: `Deal ${i}: the operators will share masts and save money, which is sensible.` }],
    rejected: [{ role: 'assistant', content: `Deal ${i}: synergy synergy synergy, the press release says, again and again.` }],
  });

beforeAll(async () => {
  // Two voices: the default one and a house style with a short style guide of its own.
  const columnists = path.join(work, 'columnists');
  fs.cpSync(path.join(COLUMNISTS_DIR, 'morris'), path.join(columnists, 'morris'), { recursive: true });
  fs.mkdirSync(path.join(columnists, 'house', 'sources'), { recursive: true });
  fs.writeFileSync(path.join(columnists, 'house', 'columnist.json'), JSON.stringify({ displayName: 'House', attribution: 'the house style' }));
  fs.writeFileSync(path.join(columnists, 'house', 'system-prompt.md'), 'You write in the house style: plain and short.\n');
  // The serving system prompt is long for the tiny tokenizer: room for it and the article.
  ({ root, h, close } = await startTinyServe(
    'morris-serve-dpo-',
    { MORRIS_DPO_MIN_NEW_PAIRS: '12', MORRIS_MAX_SEQ_TOKENS: '1200', MORRIS_COLUMNISTS_DIR: columnists },
    { trainOverrides: { ...QUICK_TRAIN, maxSeqLen: 1200, lr: 1e-2, dpoBeta: 0.5, dropout: 0 } },
  ));
  // A dataset for the gate's validation loss (the SFT side of the measures).
  const ds = Array.from({ length: 6 }, (_, i) =>
    JSON.stringify({ split: i < 4 ? 'train' : 'validation', messages: [{ role: 'user', content: `Write about deal ${i}.` }, { role: 'assistant', content: `Deal ${i} shares masts.` }] }),
  );
  fs.writeFileSync(path.join(root, 'ds.jsonl'), ds.join('\n'));
  importDataset(h.store, path.join(root, 'ds.jsonl'));
}, 60_000);

afterAll(async () => {
  await close?.();
  fs.rmSync(work, { recursive: true, force: true });
});

describe('serve: reader pairs → DPO stage → gate with preference accuracy', () => {
  it('new pairs start the DPO chain; the gate reports preference accuracy and decides', async () => {
    importPreferenceLines(h.store, Array.from({ length: 11 }, (_, i) => pair(i)).join('\n'));
    await h.scheduler.tick('dpo');
    expect(listRuns(h.store, { job: 'dpo' })).toHaveLength(0); // 11 < 12
    importPreferenceLines(h.store, pair(11));
    await h.scheduler.tick('dpo');
    const dpo = listRuns(h.store, { job: 'dpo' }).at(-1)!;
    expect(dpo.status, getLogs(h.store, dpo.id).map((l) => l.line).join('\n')).toBe('succeeded');
    expect(dpo.trigger).toBe('new-pairs');
    expect(dpo.message).toMatch(/^DPO adapter lora-\S+ on 12 pairs \(reference base\): held-out preference accuracy 0\.500 → (0\.\d+|1\.000) over \d+ pairs/);
    const evaluate = await waitFor(() => listRuns(h.store, { job: 'evaluate' }).find((r) => r.parent_id === dpo.id && r.status !== 'running'), 60_000, 200);
    expect(evaluate.status).toBe('succeeded');
    const logs = getLogs(h.store, evaluate.id).map((l) => l.line).join('\n');
    expect(logs).toMatch(/base: val loss .*, preference accuracy 0\.500 over \d+ held-out reader pairs/);
    expect(logs).toMatch(/lora-\S+: val loss .*, preference accuracy \d\.\d{3} over \d+ held-out reader pairs/);
    const candidateId = (dpo.result as { adapterId: string }).adapterId;
    const cand = getAdapter(h.store, candidateId);
    const ev = cand.eval as { candidate: { preference: { accuracy: number } }; base: { preference: { accuracy: number } }; decision: { promote: boolean; reason: string } };
    expect(ev.base.preference.accuracy).toBe(0.5);
    // With the seeds fixed, DPO moves both held-out pairs the readers' way and keeps the loss.
    expect(ev.decision).toMatchObject({ promote: true });
    expect(evaluate.message).toMatch(/^promoted: DPO: validation loss .* vs base .* \(within 0\.05\); preference accuracy 1\.000 vs base 0\.500 over \d+ held-out reader pairs/);
    expect(h.registry.active()?.id).toBe(candidateId);
    expect(h.service.status().adapterId).toBe(candidateId);
    console.log(`serve DPO: ${dpo.message}; gate: ${evaluate.message}`);
  }, 180_000);

  it('an SFT retrain is gated on readers\' preferences too, and gets a DPO stage on top', async () => {
    const active = h.registry.active()!;
    const started = await h.control.start('retrain', { trigger: 'test', input: {} });
    const runs = await started.finished;
    expect(runs.map((r) => r.job)).toEqual(['retrain', 'evaluate', 'dpo', 'evaluate']);
    expect(runs.map((r) => r.status)).toEqual(['succeeded', 'succeeded', 'succeeded', 'succeeded']);
    const sftId = (runs[0]!.result as { adapterId: string }).adapterId;
    const sftEval = getAdapter(h.store, sftId).eval as { candidate: { preference: { accuracy: number } }; active: { preference: { accuracy: number } }; decision: { promote: boolean; reason: string } };
    expect(sftEval.active.preference.accuracy).toBe(1);
    // An SFT adapter below the DPO adapter's readers' figure is not promoted, whatever its loss.
    expect(sftEval.candidate.preference.accuracy).toBeLessThan(1);
    expect(sftEval.decision).toMatchObject({ promote: false, reason: expect.stringMatching(new RegExp(`^readers' held-out preferences: accuracy 0\\.\\d{3} is below ${active.id}'s 1\\.000`)) });
    expect(runs[1]!.message).toMatch(/^not promoted: readers' held-out preferences: .*\(not promoted whatever its loss: validation loss [\d.]+ vs [\d.]+\)$/);
    expect(h.registry.active()!.id).toBe(active.id);
    // DPO on top of the retrained adapter, then the gate.
    expect(runs[2]!.result).toMatchObject({ referenceAdapterId: sftId, pairs: 12 });
    expect(runs[3]!.parent_id).toBe(runs[2]!.id);
    console.log(`serve SFT then DPO: ${runs.map((r) => `${r.job}: ${r.message}`).join(' | ')}`);
  }, 180_000);

  it("a second voice's pairs train that voice alone: its watch, its reference, its adapter line, its gate", async () => {
    const morrisActive = h.registry.active()!;
    const morrisDpoRuns = listRuns(h.store, { job: 'dpo', columnist: 'morris' }).length;
    const house = (i: number) =>
      JSON.stringify({
        prompt: [{ role: 'user', content: `Write a column about the ${i}th tariff change.` }],
        chosen: [{ role: 'assistant', content: `Tariff ${i}: prices rise by a little. Plainly put, customers pay more.` }],
        rejected: [{ role: 'assistant', content: `Tariff ${i}: wow wow wow, what a day, what a day, what a day!` }],
      });
    // The house voice's own dataset, for the gate's validation loss.
    const ds = Array.from({ length: 6 }, (_, i) => JSON.stringify({ split: i < 4 ? 'train' : 'validation', messages: [{ role: 'user', content: `Write about tariff ${i}.` }, { role: 'assistant', content: `Tariff ${i} rises.` }] }));
    fs.writeFileSync(path.join(root, 'house-ds.jsonl'), ds.join('\n'));
    importDataset(h.store, path.join(root, 'house-ds.jsonl'), undefined, { columnist: 'house' });
    importPreferenceLines(h.store, Array.from({ length: 12 }, (_, i) => house(i)).join('\n'), 'house pairs', 'house');
    // The default voice's count does not move: those are the house's pairs.
    expect(pairsSinceLastDpo(h.store, 'morris').fresh).toBe(0);
    expect(pairsSinceLastDpo(h.store, 'house')).toEqual({ total: 12, fresh: 12 });
    expect(h.scheduler.jobs()).toContainEqual(expect.objectContaining({ job: 'dpo', columnist: 'house' }));
    await h.scheduler.tick('dpo');
    await h.scheduler.tick('dpo', 'house');
    const dpo = await waitFor(() => listRuns(h.store, { job: 'dpo', columnist: 'house' }).find((r) => r.status !== 'running' && r.status !== 'skipped'), 120_000, 200);
    expect(dpo.status, getLogs(h.store, dpo.id).map((l) => l.line).join('\n')).toBe('succeeded');
    expect(dpo.trigger).toBe('new-pairs');
    // From the house's active adapter (none: the base model), never the default voice's, on its 12 pairs only.
    expect(dpo.result).toMatchObject({ referenceAdapterId: null, pairs: 12 });
    expect(dpo.message).toMatch(/^DPO adapter lora-\S+ on 12 pairs \(reference base\)/);
    const candidateId = (dpo.result as { adapterId: string }).adapterId;
    expect(getAdapter(h.store, candidateId).columnist).toBe('house');
    const evaluate = await waitFor(() => listRuns(h.store, { job: 'evaluate' }).find((r) => r.parent_id === dpo.id && r.status !== 'running'), 60_000, 200);
    expect(evaluate.status, getLogs(h.store, evaluate.id).map((l) => l.line).join('\n')).toBe('succeeded');
    expect(evaluate.columnist).toBe('house');
    const ev = getAdapter(h.store, candidateId).eval as { active: unknown; candidate: { preference: { pairs: number } }; base: { preference: { accuracy: number; pairs: number } }; decision: { promote: boolean } };
    // Compared within the voice: the house has no active adapter, so not the default voice's.
    expect(ev.active).toBeNull();
    // Measured on the house's held-out pairs: the ones its DPO run held out, not the default voice's too.
    const heldOut = (dpo.result as { preference: { heldOut: number } }).preference.heldOut;
    expect(heldOut).toBeGreaterThan(0);
    expect([ev.candidate.preference.pairs, ev.base.preference.pairs]).toEqual([heldOut, heldOut]);
    expect(h.registry.active('house')?.id ?? null).toBe(ev.decision.promote ? candidateId : null);
    // The default voice is untouched: same active adapter, no DPO run of its own.
    expect(h.registry.active()!.id).toBe(morrisActive.id);
    expect(listRuns(h.store, { job: 'dpo', columnist: 'morris' })).toHaveLength(morrisDpoRuns);
    console.log(`serve DPO (house): ${dpo.message}; gate: ${evaluate.message}`);
  }, 180_000);
});
