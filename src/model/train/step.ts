/**
 * Runs the training graph: writes the train and eval graphs beside the compile cache (hard links
 * to the checkpoint's safetensors files, so weights are never copied), opens an ONNX Runtime
 * session for the train graph on the chosen device (the forward-only eval session only when
 * first needed), and turns a micro-batch + LoRA weights into loss and gradients.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { MorrisError, wrapFsError } from '../../errors.ts';
import { childLog } from '../../log.ts';
import { openCheckpoint, type Checkpoint } from '../checkpoint/config.ts';
import { compiledDirFor, linkInto } from '../graph/compile.ts';
import { externalWeights, type LoraModule } from '../graph/llama.ts';
import { createSession, int64Tensor, Tensor, type DeviceChoice, type OrtSession, type OrtTensor, type Provider } from '../inference/runtime.ts';
import { buildTrainingGraph, DPO_IO, DROPOUT_SCALE, gradName, type DropoutInput, type LoraInput } from '../graph/training.ts';
import type { Rng } from './rng.ts';

const log = childLog('train');

export interface StepSessionsOptions {
  readonly modelDir: string;
  readonly rank: number;
  readonly alpha: number;
  readonly dropout: number;
  readonly targets: readonly LoraModule[];
  readonly device: DeviceChoice;
  readonly threads: number;
  /** Where graph files go (defaults to beside the model's compile cache). */
  readonly cacheDir?: string;
  /** Largest B·S expected per micro-batch: sizes the LM-head chunks (default 512). */
  readonly maxTokens?: number;
  /** The plain op-by-op loss instead of the chunked LM head + loss composite (tests compare them). */
  readonly plainLoss?: boolean;
  /** 'sft' (default) or 'dpo': which loss the graphs compute (src/model/graph/training.ts). */
  readonly objective?: 'sft' | 'dpo';
}

/** Each LM-head chunk's [rows, vocab] float tensors stay near this size. */
const LOSS_CHUNK_BYTES = 32 * 2 ** 20;

export function lossChunksFor(o: Pick<StepSessionsOptions, 'maxTokens' | 'plainLoss' | 'objective'>, vocab: number): number {
  if (o.plainLoss || o.objective === 'dpo') return 0;
  const needed = ((o.maxTokens ?? 512) * vocab * 4) / LOSS_CHUNK_BYTES;
  // A power of two: few distinct chunkings, and the row padding stays small.
  return needed <= 1 ? 1 : 2 ** Math.ceil(Math.log2(needed));
}

/** One right-padded micro-batch, already shifted: targets[b][t] is the token after ids[b][t]. */
export interface MicroBatch {
  readonly batch: number;
  readonly seqLen: number;
  /** [B·S] */
  readonly ids: readonly number[];
  /** [B·S] */
  readonly targets: readonly number[];
  /** [B·S] 1 where the position's next token is an assistant token. */
  readonly counted: Uint8Array;
}

export interface StepResult {
  readonly loss: number;
  readonly grads: Map<string, Float32Array>;
}

/**
 * A DPO micro-batch: `mb` holds 2P sequences, the P chosen completions then the P rejected ones
 * (same order), and `refMargin[p]` = log πref(chosen p) − log πref(rejected p).
 */
export interface PairMicroBatch {
  readonly mb: MicroBatch;
  readonly refMargin: Float32Array;
}

export interface DpoResult {
  readonly loss: number;
  /** Summed log-prob of each of the 2P sequences under the weights given. */
  readonly seqLogp: Float32Array;
  /** Training steps only. */
  readonly grads?: Map<string, Float32Array>;
}

export class TrainingSessions {
  private evalSession: OrtSession | null = null;
  /** Evaluate through the train graph (no second session) — set when memory is tight. */
  evalThroughTrainGraph = false;

  private constructor(
    readonly checkpoint: Checkpoint,
    readonly device: Provider,
    readonly lora: readonly LoraInput[],
    private readonly dropoutMasks: readonly DropoutInput[],
    private readonly train: OrtSession,
    private readonly evalFile: string,
    private readonly sessionOpts: { threads: number; extra: Record<string, unknown> },
    private readonly dropout: number,
    private readonly lossChunks: number,
    private readonly dpo: boolean,
  ) {}

  static async open(o: StepSessionsOptions): Promise<TrainingSessions> {
    const ckpt = openCheckpoint(o.modelDir);
    const dir = graphDir(o);
    const built = buildGraphFiles(ckpt, o, dir);
    // The memory pattern pre-plans buffers for the largest shape seen; off, peak RSS drops by
    // about a third at the same speed (FACTS.md).
    const extra = { enableMemPattern: false };
    const { session: train, device } = await createSession(join(dir, 'train.onnx'), { device: o.device, threads: o.threads, extra });
    log.info({ device, dir }, 'training session ready');
    return new TrainingSessions(ckpt, device, built.lora, built.dropoutMasks, train, join(dir, 'eval.onnx'), { threads: o.threads, extra }, o.dropout, built.lossChunks, o.objective === 'dpo');
  }

  /** Loss and gradients of one micro-batch; `weightPerToken` scales each counted position. */
  async step(mb: MicroBatch, weights: ReadonlyMap<string, Float32Array>, weightPerToken: number, rng: Rng): Promise<StepResult> {
    const feeds = this.feeds(mb, weights, weightPerToken);
    this.addDropoutFeeds(feeds, mb, rng);
    const out = await this.train.run(feeds);
    const grads = new Map<string, Float32Array>();
    for (const t of this.lora) grads.set(t.name, out[gradName(t.name)]!.data as Float32Array);
    return { loss: Number(out['loss']!.data[0]), grads };
  }

  /**
   * Loss only, dropout off: a forward-only session, opened on first use, or — when memory has no
   * room for a second session — the train graph with every dropout mask set to keep.
   */
  async evalLoss(mb: MicroBatch, weights: ReadonlyMap<string, Float32Array>, weightPerToken: number): Promise<number> {
    return Number((await this.runEval(this.feeds(mb, weights, weightPerToken), mb))['loss']!.data[0]);
  }

  /** Keep-masks for every LoRA input (rng null: keep everything, scale 1). */
  private addDropoutFeeds(feeds: Record<string, OrtTensor>, mb: MicroBatch, rng: Rng | null): void {
    if (this.dropoutMasks.length === 0) return;
    const n = mb.batch * mb.seqLen;
    feeds[DROPOUT_SCALE] = new Tensor('float32', new Float32Array([rng ? 1 / (1 - this.dropout) : 1]), []);
    // Two 16-bit draws per 32-bit random number: p is honoured to 1/65536.
    const threshold = Math.round(this.dropout * 65536);
    for (const m of this.dropoutMasks) {
      const keep = new Uint8Array(n * m.inFeatures);
      if (rng) rng.fillKeepMask(keep, threshold);
      else keep.fill(1);
      feeds[m.name] = new Tensor('uint8', keep, [n, m.inFeatures]);
    }
  }

  private feeds(mb: MicroBatch, weights: ReadonlyMap<string, Float32Array>, weightPerToken: number): Record<string, OrtTensor> {
    const dims = [mb.batch, mb.seqLen];
    const pos: number[] = [];
    for (let b = 0; b < mb.batch; b++) for (let t = 0; t < mb.seqLen; t++) pos.push(t);
    // Only counted positions go to the LM head; padded with weight-0 copies of row 0 up to a
    // multiple of the graph's loss chunks.
    const rows: number[] = [];
    for (let i = 0; i < mb.counted.length; i++) if (mb.counted[i]) rows.push(i);
    const chunks = Math.max(1, this.lossChunks);
    const m = Math.max(chunks, Math.ceil(rows.length / chunks) * chunks);
    const targets = rows.map((i) => mb.targets[i]!);
    const w = new Float32Array(m);
    w.fill(weightPerToken, 0, rows.length);
    while (rows.length < m) {
      rows.push(0);
      targets.push(0);
    }
    const feeds: Record<string, OrtTensor> = {
      input_ids: int64Tensor(mb.ids, dims),
      position_ids: int64Tensor(pos, dims),
      loss_rows: int64Tensor(rows, [m]),
      targets: int64Tensor(targets, [m]),
    };
    // The DPO graph weighs pairs, not tokens (dpoFeeds adds its inputs).
    if (!this.dpo) feeds['loss_weights'] = new Tensor('float32', w, [m]);
    for (const t of this.lora) {
      const data = weights.get(t.name);
      if (!data) throw new MorrisError('INTERNAL', `No LoRA weights for ${t.name}.`);
      feeds[t.name] = new Tensor('float32', data, t.shape);
    }
    return feeds;
  }

  /** DPO loss, per-sequence log-probs and gradients of one pair micro-batch (objective 'dpo'). */
  async dpoStep(pb: PairMicroBatch, weights: ReadonlyMap<string, Float32Array>, pairWeight: number, beta: number, rng: Rng): Promise<DpoResult> {
    const feeds = this.dpoFeeds(pb, weights, pairWeight, beta);
    this.addDropoutFeeds(feeds, pb.mb, rng);
    const out = await this.train.run(feeds);
    const grads = new Map<string, Float32Array>();
    for (const t of this.lora) grads.set(t.name, out[gradName(t.name)]!.data as Float32Array);
    return { loss: Number(out['loss']!.data[0]), seqLogp: out[DPO_IO.seqLogp]!.data as Float32Array, grads };
  }

  /** DPO loss and per-sequence log-probs, dropout off (the reference pass and evaluation). */
  async dpoEval(pb: PairMicroBatch, weights: ReadonlyMap<string, Float32Array>, pairWeight: number, beta: number): Promise<DpoResult> {
    const feeds = this.dpoFeeds(pb, weights, pairWeight, beta);
    const out = await this.runEval(feeds, pb.mb);
    return { loss: Number(out['loss']!.data[0]), seqLogp: out[DPO_IO.seqLogp]!.data as Float32Array };
  }

  private dpoFeeds(pb: PairMicroBatch, weights: ReadonlyMap<string, Float32Array>, pairWeight: number, beta: number): Record<string, OrtTensor> {
    const { mb, refMargin } = pb;
    const P = refMargin.length;
    if (mb.batch !== 2 * P) throw new MorrisError('INTERNAL', `A DPO micro-batch of ${P} pairs needs ${2 * P} sequences, not ${mb.batch}.`);
    const feeds = this.feeds(mb, weights, 0);
    const rows = feeds['loss_rows']!.data as BigInt64Array;
    const seqRows = new Float32Array(mb.batch * rows.length); // [Q, M]
    rows.forEach((r, m) => (seqRows[Math.floor(Number(r) / mb.seqLen) * rows.length + m] = 1));
    const signs = new Float32Array(P * mb.batch); // [P, Q]
    for (let p = 0; p < P; p++) {
      signs[p * mb.batch + p] = 1;
      signs[p * mb.batch + P + p] = -1;
    }
    feeds[DPO_IO.seqRows] = new Tensor('float32', seqRows, [mb.batch, rows.length]);
    feeds[DPO_IO.pairSigns] = new Tensor('float32', signs, [P, mb.batch]);
    feeds[DPO_IO.refMargin] = new Tensor('float32', refMargin, [P]);
    feeds[DPO_IO.pairWeights] = new Tensor('float32', new Float32Array(P).fill(pairWeight), [P]);
    feeds[DPO_IO.beta] = new Tensor('float32', new Float32Array([beta]), []);
    return feeds;
  }

  /** One forward-only run: the eval session, or the train graph with dropout off. */
  private async runEval(feeds: Record<string, OrtTensor>, mb: MicroBatch): Promise<Record<string, OrtTensor>> {
    if (this.evalThroughTrainGraph) {
      this.addDropoutFeeds(feeds, mb, null);
      return this.train.run(feeds);
    }
    if (!this.evalSession) {
      this.evalSession = (await createSession(this.evalFile, { device: this.device, threads: this.sessionOpts.threads, extra: this.sessionOpts.extra })).session;
    }
    return this.evalSession.run(feeds);
  }

  async release(): Promise<void> {
    await this.train.release();
    await this.evalSession?.release();
    this.evalSession = null;
  }
}

function graphDir(o: StepSessionsOptions): string {
  const key = JSON.stringify({ model: resolve(o.modelDir), r: o.rank, a: o.alpha, p: o.dropout > 0 ? o.dropout : 0, t: o.targets, maxTokens: o.maxTokens ?? 512, plain: o.plainLoss === true, objective: o.objective ?? 'sft' });
  const hash = createHash('sha256').update(key).digest('hex').slice(0, 12);
  const root = o.cacheDir ? join(resolve(o.cacheDir), 'train') : dirname(compiledDirFor({ modelDir: o.modelDir }));
  return join(root, `train-${hash}`);
}

function fileIdentity(f: string): string {
  const s = statSync(f);
  return `${f}:${s.size}:${s.mtimeMs}:${s.ino}`;
}

/** Writes train.onnx / eval.onnx with hard links to the weights; reuses an up-to-date folder. */
function buildGraphFiles(ckpt: Checkpoint, o: StepSessionsOptions, dir: string): { lora: LoraInput[]; dropoutMasks: DropoutInput[]; lossChunks: number } {
  const t0 = Date.now();
  const sources = [...new Set([...ckpt.tensors.values()].map((t) => t.file))].sort();
  const location = new Map(sources.map((f) => [f, `base/${basename(f)}`]));
  const weights = (g: Parameters<typeof externalWeights>[0]) => externalWeights(g, ckpt.tensors, (f) => location.get(f)!);
  const opts = { rank: o.rank, alpha: o.alpha, targets: o.targets, dropout: o.dropout, lossChunks: lossChunksFor(o, ckpt.config.vocabSize), objective: o.objective };
  const train = buildTrainingGraph(ckpt.config, weights, { ...opts, train: true });
  const evalGraph = buildTrainingGraph(ckpt.config, weights, { ...opts, train: false });
  const result = { lora: [...train.lora], dropoutMasks: [...train.dropoutMasks], lossChunks: opts.lossChunks };
  // Graphs are rebuilt every time (a fraction of a second) and compared by content, so a change
  // in the builder or the autodiff can never leave a stale graph file in use.
  const trainBytes = train.g.serialize({ docString: 'morris LoRA training step' });
  const evalBytes = evalGraph.g.serialize({ docString: 'morris LoRA eval loss' });
  const key = createHash('sha256').update(trainBytes).update(evalBytes).update(JSON.stringify(sources.map(fileIdentity))).digest('hex');
  const stamp = join(dir, 'graph.json');
  if (existsSync(stamp) && readFileSync(stamp, 'utf8') === key && existsSync(join(dir, 'train.onnx'))) return result;

  const tmp = `${dir}.tmp-${process.pid}`;
  try {
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(join(tmp, 'base'), { recursive: true });
    for (const f of sources) linkInto(f, join(tmp, 'base', basename(f)));
    writeFileSync(join(tmp, 'train.onnx'), trainBytes);
    writeFileSync(join(tmp, 'eval.onnx'), evalBytes);
    writeFileSync(join(tmp, 'graph.json'), key);
    rmSync(dir, { recursive: true, force: true });
    renameSync(tmp, dir);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw wrapFsError(e, dir);
  }
  log.info({ dir, nodes: train.g.nodes.length, ms: Date.now() - t0 }, 'built training graph');
  return result;
}

