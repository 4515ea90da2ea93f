/**
 * `morris train --method dpo`: wiring only. The voice (`--columnist`, default the default one), the
 * reference (`--adapter DIR|ID|none`, a registered one must be the voice's) and the pairs
 * (`--pairs latest`: readers' pairs on the voice's articles, or FILE.jsonl) are resolved here;
 * trainDpo does the work and the adapter joins the voice's line.
 */
import fs from 'node:fs';
import { resolve } from 'node:path';
import type { CliContext } from './context.ts';
import { MorrisError } from '../errors.ts';
import type { TrainCallbacks } from '../model/train/trainer.ts';

export interface DpoFlags {
  columnist?: string;
  adapter?: string;
  pairs: string;
  out?: string;
  resume?: boolean;
}

/** The reference adapter's folder: a folder, a registered adapter id (of `voice`), or null for `none`. */
function referenceDir(ctx: CliContext, ref: string | undefined, voice: string, findAdapter: (id: string) => { path: string; columnist: string } | undefined): string | null {
  if (ref === undefined) {
    throw new MorrisError('BAD_INPUT', 'DPO needs a reference: --adapter DIR (the adapter the rated articles were written with) or --adapter none (the base model).', {
      hint: 'e.g. `morris train --method dpo --adapter none --pairs latest --out DIR`.',
    });
  }
  if (ref === 'none') return null;
  if (fs.existsSync(ref)) return resolve(ref);
  const registered = findAdapter(ref);
  if (registered && registered.columnist !== voice) {
    throw new MorrisError('BAD_INPUT', `Adapter ${ref} is ${registered.columnist}'s, not ${voice}'s.`, {
      hint: `Add --columnist ${registered.columnist} to train that voice, or give one of ${voice}'s adapters (\`morris adapters list --columnist ${voice}\`).`,
    });
  }
  if (registered) return registered.path;
  ctx.config();
  throw new MorrisError('NOT_FOUND', `No adapter folder or registered adapter ${ref}.`, { hint: 'Give an adapter folder (adapter_config.json + adapter_model.safetensors), an id from `morris adapters list`, or none.' });
}

export async function runDpoTraining(
  ctx: CliContext,
  f: DpoFlags,
  common: { modelDir: string; hostSettings: Record<string, unknown>; settings: Record<string, unknown>; runsDir: string; adaptersDir: string },
  cb: TrainCallbacks,
): Promise<{ lines: string[]; status: string; reason: string; hint?: string }> {
  const { findAdapter } = await import('../store/adapters.ts');
  const { resolveColumnist } = await import('../columnists/folder.ts');
  const voice = resolveColumnist(f.columnist, ctx.config());
  const refDir = referenceDir(ctx, f.adapter, voice.name, (id) => findAdapter(ctx.store(), id));
  const { parsePreferenceRecords, storePreferenceRecords } = await import('../pipeline/dataset/preferences.ts');
  let records;
  if (f.pairs === 'latest') {
    const { servingSystemPrompt } = await import('../prompts.ts');
    // Readers' pairs on this voice's articles, prompted with its style guide as they were asked.
    records = storePreferenceRecords(ctx.store(), servingSystemPrompt(voice.systemPromptFile).text, voice.name);
  } else {
    if (!fs.existsSync(f.pairs)) throw new MorrisError('NOT_FOUND', `No pairs file ${f.pairs}.`, { hint: 'Give --pairs latest (the pairs readers made) or a JSONL file in TRL preference format (`morris feedback export --out FILE`).' });
    records = parsePreferenceRecords(fs.readFileSync(f.pairs, 'utf8'), f.pairs);
  }
  // Loaded on use: the trainer pulls in ONNX Runtime, which `morris --help` does not need.
  const { trainDpo, describePairs } = await import('../model/train/dpo.ts');
  const r = await trainDpo(
    { store: ctx.store(), modelDir: common.modelDir, referenceDir: refDir, records, pairsSource: f.pairs === 'latest' ? 'latest' : resolve(f.pairs), columnist: voice.name, hostSettings: common.hostSettings, settings: common.settings, resume: f.resume, outDir: f.out, runsDir: common.runsDir, adaptersDir: common.adaptersDir },
    cb,
  );
  const m = r.metrics as { eval_loss_initial: number | null; eval_loss: number | null; train_loss: number | null; seconds: number };
  const v = r.verdict;
  const pct = (x: number) => (Number.isFinite(x) ? x.toFixed(3) : '-');
  const lines = [
    `adapter ${r.adapterId} (DPO for ${voice.name}, ${v.status === 'unregistered' ? 'saved, not registered' : v.status}) → ${r.adapterDir}`,
    ...(f.out ? [`copy → ${resolve(f.out)}`] : []),
    `reference ${refDir ?? 'base model'}; ${r.steps} steps on ${r.device}${r.resumedFrom !== null ? ` (resumed from step ${r.resumedFrom})` : ''}${r.stoppedEarly ? ', stopped early' : ''}, ${m.seconds}s`,
    `train pairs: ${describePairs(r.counts.train)}`,
    `held-out pairs: ${describePairs(r.counts.heldOut)}`,
    `DPO loss ${m.train_loss?.toFixed(4) ?? '-'}; held-out ${m.eval_loss === null ? '-' : `${m.eval_loss_initial?.toFixed(4) ?? '-'} → ${m.eval_loss.toFixed(4)}`}`,
    `held-out preference accuracy ${pct(r.preference.initial)} → ${pct(r.preference.final)} (${r.preference.heldOut} pairs)`,
  ];
  return { lines, status: v.status, reason: v.reason, hint: 'hint' in v ? v.hint : undefined };
}
