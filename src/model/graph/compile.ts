/**
 * Compiles a checkpoint (+ optional PEFT adapter, + optional weight-only quantization) into a
 * folder transformers.js can load, without copying weights.
 *
 * Layout (decided here): `<root>/<variant>/` where
 *   root    = opts.cacheDir, else `<modelDir>/.morris` when the model folder is writable, else
 *             `<tmpdir>/morris-compiled/<hash of modelDir>`;
 *   variant = `fp32|int8|int4` + (`-adapter-<hash of adapterDir>` when an adapter is applied).
 * The variant folder holds config.json and the tokenizer files (small copies), `onnx/model.onnx`,
 * and under `onnx/` HARD LINKS to the checkpoint's safetensors files (`onnx/base/…`) and the
 * adapter's (`onnx/adapter/…`), because ONNX Runtime only accepts external data inside the .onnx
 * folder (no `..`, absolute paths or symlinks). Quantized weights are the one new data file:
 * computed once per model and quant into `<root>/weights-<quant>/quant.bin` and hard-linked as
 * `onnx/quant.bin` into each variant (base and every adapter). `compiled.json` records the identity of every source file; a change
 * (new adapter written by rename, re-downloaded weights) triggers a recompile.
 */
import { createHash } from 'node:crypto';
import { accessSync, constants, copyFileSync, existsSync, linkSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { MorrisError, wrapFsError } from '../../errors.ts';
import { childLog } from '../../log.ts';
import { openCheckpoint, type Checkpoint, type DecoderConfig } from '../checkpoint/config.ts';
import { buildInferenceGraph, externalWeights, LORA_MODULES, moduleName, type LoraModule, type LoraTensors, type WeightProvider } from './llama.ts';
import type { TensorEntry } from '../checkpoint/safetensors.ts';
import { pairKey, readAdapter, type Adapter } from '../checkpoint/lora.ts';
import { BLOCK_SIZE, ExternalDataFile, quantizeWeights, quantLinear, type QuantBits, type QuantizedWeight } from '../checkpoint/quant.ts';

const log = childLog('compile');

/** Bump when the graph changes, so old compiled folders are rebuilt. */
const COMPILER_VERSION = 13;

export type Quant = 'fp32' | 'int8' | 'int4';
export const SIDE_FILES = ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json', 'special_tokens_map.json'];

export interface CompileOptions {
  modelDir: string;
  adapterDir?: string | null;
  quant?: Quant;
  cacheDir?: string;
}

export interface CompiledModel {
  /** Folder to hand to transformers.js (config, tokenizer, onnx/model.onnx). */
  readonly dir: string;
  readonly onnxFile: string;
  readonly config: DecoderConfig;
  readonly adapter: Adapter | null;
  readonly quant: Quant;
  /** int8/int4: where the quantized matrices are (for the native decode kernel); null for fp32. */
  readonly quantized: QuantizedIndex | null;
  /** Whether this call built the graph (false: reused an up-to-date compiled folder). */
  readonly built: boolean;
}

const shortHash = (s: string): string => createHash('sha256').update(s).digest('hex').slice(0, 12);

function writable(dir: string): boolean {
  try {
    accessSync(dir, constants.W_OK);
    return true;
  } catch {
    return false; // not writable → compile into the temp dir instead
  }
}

export function compiledDirFor(opts: CompileOptions): string {
  const modelDir = resolve(opts.modelDir);
  const root = opts.cacheDir
    ? join(resolve(opts.cacheDir), shortHash(modelDir))
    : writable(modelDir)
      ? join(modelDir, '.morris')
      : join(tmpdir(), 'morris-compiled', shortHash(modelDir));
  const variant = (opts.quant ?? 'fp32') + (opts.adapterDir ? `-adapter-${shortHash(resolve(opts.adapterDir))}` : '');
  return join(root, variant);
}

function fileIdentity(f: string): string {
  const s = statSync(f);
  return `${f}:${s.size}:${s.mtimeMs}:${s.ino}`;
}

/**
 * Hard link (never a copy of the weights): ONNX Runtime reads external data only from inside the
 * graph's folder. Same file system required.
 */
export function linkInto(src: string, dest: string): void {
  try {
    linkSync(src, dest);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EXDEV' || code === 'EPERM') {
      throw new MorrisError('MODEL_INVALID', `Cannot hard-link ${src} into ${dest} (${code}).`, {
        hint: 'Put the compile cache (cacheDir) on the same file system as the model, or make the model folder writable.',
        cause: e,
      });
    }
    throw wrapFsError(e, dest);
  }
}

export interface QuantizedIndex {
  /** quant.bin inside the compiled folder (a hard link to the shared quantized weights). */
  readonly file: string;
  readonly bits: QuantBits;
  readonly blockSize: number;
  readonly weights: ReadonlyMap<string, QuantizedWeight>;
}

export async function compileModel(opts: CompileOptions): Promise<CompiledModel> {
  const quant = opts.quant ?? 'fp32';
  const ckpt: Checkpoint = openCheckpoint(opts.modelDir);
  const adapter = opts.adapterDir ? readAdapter(resolve(opts.adapterDir), ckpt.config) : null;
  const dir = compiledDirFor(opts);
  const onnxFile = join(dir, 'onnx', 'model.onnx');
  const sources = [...new Set([...ckpt.tensors.values()].map((t) => t.file))].sort();
  const sideFiles = SIDE_FILES.map((f) => join(ckpt.dir, f)).filter((f) => existsSync(f));
  const key = JSON.stringify({
    v: COMPILER_VERSION,
    quant,
    files: [...sources, ...sideFiles, ...(adapter ? [adapter.file, join(adapter.dir, 'adapter_config.json')] : [])].map(fileIdentity),
  });
  const stamp = join(dir, 'compiled.json');
  const bits: QuantBits = quant === 'int8' ? 8 : 4;
  const quantKey = JSON.stringify({ v: COMPILER_VERSION, bits, files: sources.map(fileIdentity) });
  const quantDir = join(dirname(dir), `weights-${quant}`);
  const index = (weights: ReadonlyMap<string, QuantizedWeight>): QuantizedIndex => ({ file: join(dir, 'onnx', 'quant.bin'), bits, blockSize: BLOCK_SIZE[bits], weights });
  if (existsSync(stamp) && existsSync(onnxFile) && readFileSync(stamp, 'utf8') === key) {
    const saved = quant === 'fp32' ? null : readQuantIndex(quantDir, quantKey);
    if (quant === 'fp32' || saved) return { dir, onnxFile, config: ckpt.config, adapter, quant, quantized: saved ? index(saved) : null, built: false };
    // the shared quantized weights were removed: build again
  }

  const t0 = Date.now();
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(join(tmp, 'onnx', 'base'), { recursive: true });
  let quantized: { file: string; weights: Map<string, QuantizedWeight> } | null = null;
  try {
    for (const f of sideFiles) copyFileSync(f, join(tmp, basename(f)));
    const location = new Map<string, string>();
    for (const f of sources) {
      linkInto(f, join(tmp, 'onnx', 'base', basename(f)));
      location.set(f, `base/${basename(f)}`);
    }
    if (adapter) {
      mkdirSync(join(tmp, 'onnx', 'adapter'));
      linkInto(adapter.file, join(tmp, 'onnx', 'adapter', basename(adapter.file)));
      location.set(adapter.file, `adapter/${basename(adapter.file)}`);
    }
    quantized = quant === 'fp32' ? null : await quantizedBase(ckpt, bits, quantDir, quantKey);
    if (quantized) linkInto(quantized.file, join(tmp, 'onnx', 'quant.bin'));
    const g = buildInferenceGraph(ckpt.config, (gb) => ({
      weights: externalWeights(gb, ckpt.tensors, (f) => location.get(f)!),
      linear: quantized ? quantLinear(bits, quantized.weights) : undefined,
      lora: adapter ? adapterLora(adapter, externalWeights(gb, adapterTensors(adapter), (f) => location.get(f)!, 'lora:')) : undefined,
    }));
    writeFileSync(join(tmp, 'onnx', 'model.onnx'), g.serialize({ docString: `morris ${quant}${adapter ? ' + LoRA ' + adapter.dir : ''}` }));
    writeFileSync(join(tmp, 'compiled.json'), key);
    // Move a stale folder aside first (sessions still reading it keep their open files), then
    // swap in the new one; if another process got there first with the same key, use its folder.
    if (existsSync(dir)) renameSync(dir, `${dir}.old-${process.pid}-${Date.now()}`);
    try {
      renameSync(tmp, dir);
    } catch (e) {
      if (existsSync(stamp) && readFileSync(stamp, 'utf8') === key) {
        rmSync(tmp, { recursive: true, force: true });
        return { dir, onnxFile, config: ckpt.config, adapter, quant, quantized: quantized ? index(quantized.weights) : null, built: false };
      }
      throw e;
    }
    for (const old of readdirSync(dirname(dir)).filter((f) => f.startsWith(`${basename(dir)}.old-`))) {
      rmSync(join(dirname(dir), old), { recursive: true, force: true });
    }
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw wrapFsError(e, dir);
  }
  log.info({ dir, quant, adapter: adapter?.dir ?? null, ms: Date.now() - t0 }, 'compiled model graph');
  return { dir, onnxFile, config: ckpt.config, adapter, quant, quantized: quantized ? index(quantized.weights) : null, built: true };
}

/**
 * Quantized base weights, computed once per (model, quant) into `<root>/weights-<quant>/quant.bin`
 * with an index of offsets, and hard-linked into every variant: a new adapter reuses them instead
 * of quantizing the whole model again.
 */
async function quantizedBase(ckpt: Checkpoint, bits: QuantBits, dir: string, key: string): Promise<{ file: string; weights: Map<string, QuantizedWeight> }> {
  const file = join(dir, 'quant.bin');
  const done = readQuantIndex(dir, key);
  if (done) return { file, weights: done };
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  try {
    const out = new ExternalDataFile(join(tmp, 'quant.bin'), 'quant.bin');
    let weights: Map<string, QuantizedWeight>;
    try {
      weights = await quantizeWeights(linearWeights(ckpt), bits, out);
    } finally {
      out.close();
    }
    writeFileSync(join(tmp, 'quant.json'), JSON.stringify({ key, weights: Object.fromEntries(weights) }));
    // Another process finished the same weights while we quantized: keep its folder. Moving it
    // aside would pull quant.bin from under that process while it links it into its graph.
    const finished = readQuantIndex(dir, key);
    if (finished) {
      rmSync(tmp, { recursive: true, force: true });
      return { file, weights: finished };
    }
    if (existsSync(dir)) renameSync(dir, `${dir}.old-${process.pid}-${Date.now()}`);
    try {
      renameSync(tmp, dir);
    } catch (e) {
      // Another process (the serve process and a job worker, say) finished the same weights first.
      const theirs = readQuantIndex(dir, key);
      if (!theirs) throw e;
      rmSync(tmp, { recursive: true, force: true });
      return { file, weights: theirs };
    }
    for (const old of readdirSync(dirname(dir)).filter((f) => f.startsWith(`${basename(dir)}.old-`))) rmSync(join(dirname(dir), old), { recursive: true, force: true });
    return { file, weights };
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

/** The offsets of quantized weights made for `key`, or undefined when there are none to reuse. */
function readQuantIndex(dir: string, key: string): Map<string, QuantizedWeight> | undefined {
  const index = join(dir, 'quant.json');
  if (!existsSync(index) || !existsSync(join(dir, 'quant.bin'))) return undefined;
  let saved: { key?: string; weights?: Record<string, QuantizedWeight> };
  try {
    saved = JSON.parse(readFileSync(index, 'utf8'));
  } catch {
    return undefined; // a torn or hand-edited index: quantize again rather than trust it
  }
  return saved.key === key && saved.weights ? new Map(Object.entries(saved.weights)) : undefined;
}

/** Every [out, in] matrix a decode step multiplies by: the projections and the LM head. */
function linearWeights(ckpt: Checkpoint): { name: string; entry: TensorEntry }[] {
  const names: string[] = [];
  for (let l = 0; l < ckpt.config.numLayers; l++) for (const m of LORA_MODULES) names.push(`${moduleName(l, m)}.weight`);
  names.push(ckpt.config.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight');
  return names.map((name) => ({ name, entry: ckpt.tensors.get(name)! }));
}

function adapterTensors(adapter: Adapter): Map<string, TensorEntry> {
  const m = new Map<string, TensorEntry>();
  for (const { a, b } of adapter.pairs.values()) {
    m.set(a.name, a);
    m.set(b.name, b);
  }
  return m;
}

/** LoRA hook for buildDecoderForward: A/B are external initializers read from the adapter's own file. */
export function adapterLora(adapter: Adapter, w: WeightProvider): (layer: number, m: LoraModule) => LoraTensors | undefined {
  return (layer, m) => {
    const pair = adapter.pairs.get(pairKey(layer, m));
    if (!pair) return undefined;
    return { a: w.get(pair.a.name), b: w.get(pair.b.name), scale: adapter.scale };
  };
}
