/**
 * Adapters in and out of Morris (issue 18, "past one machine"): `export` writes the active (or any)
 * adapter as a PEFT folder vLLM loads with `--lora-modules NAME=DIR`; `import` registers a PEFT
 * adapter trained elsewhere (Axolotl, TRL, PEFT) as a candidate after checking it against the base
 * model this Morris serves, so the evaluation gate decides whether it may answer, exactly as for
 * an adapter trained here.
 *
 * The checks, in order: the folder's files; the adapter's type and options (LoRA only, no DoRA,
 * no modules_to_save, supported target modules: readAdapter); every tensor's name and shape
 * against the base model's config (an adapter for another size cannot slip through); the base it
 * names (base_model_name_or_path) against ours; and every weight finite (a file damaged in
 * transit reads as numbers, not as an error).
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { MorrisError, wrapFsError } from '../errors.ts';
import { readDecoderConfig } from '../model/checkpoint/config.ts';
import { readAdapter, type Adapter } from '../model/checkpoint/lora.ts';
import { readTensorF32 } from '../model/checkpoint/safetensors.ts';
import { findAdapter, getActiveAdapter, insertAdapter, type AdapterRow } from '../store/adapters.ts';
import type { Store } from '../store/db.ts';

/** The files of a PEFT adapter folder that carry it (the rest: our metrics, logs). */
export const PEFT_FILES = ['adapter_config.json', 'adapter_model.safetensors'] as const;

/** The last path or repo segment, lower-cased: "HuggingFaceTB/SmolLM2-360M-Instruct" → "smollm2-360m-instruct". */
function modelName(idOrPath: string): string {
  return idOrPath.replace(/[\\/]+$/, '').split(/[\\/]/).pop()!.toLowerCase();
}

/**
 * Whether the base an adapter names is ours: the same folder, or the same model name (a Hub id
 * and the folder it was pulled into end alike). An adapter that names no base passes on shapes.
 */
export function namesOurBase(named: string | null, ours: { setting: string; dir: string }): boolean {
  if (!named) return true;
  if (path.resolve(named) === path.resolve(ours.dir)) return true;
  return [ours.setting, ours.dir].some((o) => modelName(o) === modelName(named));
}

export interface ImportedAdapter {
  id: string;
  dir: string;
  adapter: Pick<Adapter, 'r' | 'alpha' | 'targetModules' | 'baseModel'>;
}

/**
 * Checks `sourceDir` against the base model in `base.dir`, copies its PEFT files under
 * `adaptersDir` and registers it as a candidate. Nothing is registered when a check fails.
 */
export function importAdapter(
  store: Store,
  sourceDir: string,
  base: { setting: string; dir: string },
  adaptersDir: string,
  now: () => Date = () => new Date(),
  /** The voice it joins (default: the default columnist); the gate then compares it with that voice's active adapter. */
  columnist?: string,
): ImportedAdapter {
  const src = path.resolve(sourceDir);
  for (const f of PEFT_FILES) {
    if (!fs.existsSync(path.join(src, f))) {
      throw new MorrisError('NOT_FOUND', `${src} has no ${f}.`, { hint: 'Give the folder a PEFT trainer saved (adapter_config.json and adapter_model.safetensors).' });
    }
  }
  const adapter = readAdapter(src, readDecoderConfig(base.dir));
  if (!namesOurBase(adapter.baseModel, base)) {
    throw new MorrisError('ADAPTER_MISMATCH', `The adapter was trained for ${adapter.baseModel}; Morris serves ${base.setting}.`, {
      hint: 'Import an adapter trained on this base model, or set MORRIS_BASE_MODEL to the base it was trained for.',
    });
  }
  const hash = createHash('sha256');
  for (const [key, { a, b }] of adapter.pairs) {
    for (const [which, t] of [['A', a], ['B', b]] as const) {
      const values = readTensorF32(t);
      if (!values.every(Number.isFinite)) {
        throw new MorrisError('MODEL_INVALID', `Adapter weights ${key} lora_${which} hold NaN or infinite values.`, { hint: 'The file is damaged or the training diverged; export it again.' });
      }
      hash.update(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
    }
  }
  const id = `import-${now().toISOString().replace(/[-:T]/g, '').slice(0, 14)}-${hash.digest('hex').slice(0, 6)}`;
  if (findAdapter(store, id)) throw new MorrisError('BAD_INPUT', `Adapter ${id} is already registered.`, { hint: 'It was imported a moment ago; `morris adapters list` shows it.' });
  const dir = path.resolve(adaptersDir, id);
  try {
    fs.mkdirSync(dir, { recursive: true });
    for (const f of PEFT_FILES) fs.copyFileSync(path.join(src, f), path.join(dir, f));
    insertAdapter(store, {
      id,
      baseModel: adapter.baseModel ?? base.setting,
      datasetId: null,
      path: dir,
      status: 'candidate',
      metrics: { imported_from: src, r: adapter.r, lora_alpha: adapter.alpha, target_modules: adapter.targetModules },
      reason: null,
      ...(columnist ? { columnist } : {}),
    });
  } catch (e) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw wrapFsError(e, 'the imported adapter');
  }
  return { id, dir, adapter: { r: adapter.r, alpha: adapter.alpha, targetModules: adapter.targetModules, baseModel: adapter.baseModel } };
}

/** `active` (a columnist's, default the default one's) or an adapter id → its row; a clear error when there is none. */
export function adapterToExport(store: Store, ref: string, columnist?: string): AdapterRow {
  const row = ref === 'active' ? getActiveAdapter(store, columnist) : findAdapter(store, ref);
  if (!row) {
    throw new MorrisError('NOT_FOUND', ref === 'active' ? `No adapter is active${columnist ? ` for ${columnist}` : ''}: the base model answers.` : `No adapter ${ref}.`, {
      hint: '`morris adapters list` shows the adapters there are.',
    });
  }
  return row;
}

/**
 * Copies the adapter's PEFT files into `outDir` (created; existing files of the same name
 * replaced); returns where, and its rank (vLLM refuses ranks above its --max-lora-rank).
 */
export function exportAdapter(row: AdapterRow, outDir: string): { out: string; rank: number } {
  const out = path.resolve(outDir);
  for (const f of PEFT_FILES) {
    if (!fs.existsSync(path.join(row.path, f))) {
      throw new MorrisError('MODEL_MISSING', `Adapter ${row.id} has no ${f} in ${row.path}.`, { hint: 'Its folder was moved or deleted; retrain or import it again.' });
    }
  }
  const rank = Number((JSON.parse(fs.readFileSync(path.join(row.path, PEFT_FILES[0]), 'utf8')) as { r?: unknown }).r);
  try {
    fs.mkdirSync(out, { recursive: true });
    for (const f of PEFT_FILES) fs.copyFileSync(path.join(row.path, f), path.join(out, f));
  } catch (e) {
    throw wrapFsError(e, `the export folder ${out}`);
  }
  return { out, rank };
}
