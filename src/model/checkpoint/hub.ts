/**
 * Downloading base models from the Hugging Face Hub with the maintained `@huggingface/hub`
 * client: list the repo, fetch what inference and training need (config, tokenizer, safetensors
 * weights and shards), resume partial files with Range requests, and check every file's size
 * against the listing and its sha256 where the Hub gives one (LFS oid).
 *
 * On disk: `<destDir>/<file>` once complete and verified; `<file>.incomplete` while in progress,
 * continued on the next run; `.morris-pull.json` records a finished pull.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { downloadFile, HubApiError, listFiles, type ListFileEntry } from '@huggingface/hub';
import type { Config } from '../../config.ts';
import { MorrisError, isMorrisError, wrapFsError } from '../../errors.ts';
import { childLog } from '../../log.ts';
import { baseModelLocation } from './base-model-location.ts';

const log = childLog('hub');

/** Marker written after a complete, verified pull. */
export const PULL_MARKER = '.morris-pull.json';
/**
 * Present while a pull is under way (or was interrupted between files, when no `*.incomplete`
 * file is left to say so); its ending makes `isCompleteModelDir` refuse the folder.
 */
export const PULL_IN_PROGRESS = '.morris-pull.incomplete';

const REPO_ID = /^[A-Za-z0-9][\w.-]*(\/[A-Za-z0-9][\w.-]*)?$/;

/** Root-level files a Llama-family checkpoint needs here; onnx/, *.bin, *.gguf etc. are left out. */
const WANTED = [
  /^config\.json$/,
  /^generation_config\.json$/,
  /^tokenizer\.json$/,
  /^tokenizer_config\.json$/,
  /^special_tokens_map\.json$/,
  /^chat_template\.jinja$/,
  /^model\.safetensors$/,
  /^model\.safetensors\.index\.json$/,
  /^model-\d+-of-\d+\.safetensors$/,
];

export interface PullProgress {
  file: string;
  fileIndex: number;
  fileCount: number;
  /** Bytes of this file on disk so far (resumed bytes included). */
  fileBytes: number;
  fileTotal: number;
  /** Over all selected files. */
  bytes: number;
  total: number;
}

export interface PullOptions {
  destDir: string;
  endpoint?: string;
  token?: string;
  revision?: string;
  onProgress?: (p: PullProgress) => void;
  /** For tests and proxies; defaults to the global fetch. */
  fetch?: typeof fetch;
}

export interface PulledFile {
  path: string;
  size: number;
  /** 'skipped' = already complete on disk, 'resumed' = continued from a partial file. */
  action: 'downloaded' | 'resumed' | 'skipped';
}

export interface PullResult {
  dir: string;
  repoId: string;
  files: PulledFile[];
  bytesDownloaded: number;
}

function hubError(e: unknown, repoId: string, what: string): MorrisError {
  if (isMorrisError(e)) return e;
  if (e instanceof HubApiError) {
    if (e.statusCode === 401 || e.statusCode === 403) {
      return new MorrisError('FORBIDDEN', `The Hub refused access to ${repoId} (${e.statusCode}) while ${what}.`, {
        hint: 'The model may be gated or private: accept its licence on the Hub and set HF_TOKEN.',
        cause: e,
      });
    }
    if (e.statusCode === 404) {
      return new MorrisError('NOT_FOUND', `No model "${repoId}" on the Hub (404 while ${what}).`, { hint: 'Check the repo id, e.g. HuggingFaceTB/SmolLM2-360M-Instruct.', cause: e });
    }
  }
  // undici's "fetch failed" hides the reason (DNS, refused, reset) in its cause.
  const cause = (e as { cause?: { code?: string; message?: string } } | undefined)?.cause;
  const detail = cause?.code ?? cause?.message;
  return new MorrisError('FETCH_FAILED', `Download of ${repoId} failed while ${what}: ${e instanceof Error ? e.message : String(e)}${detail ? ` (${detail})` : ''}`, {
    hint: 'Check the network (and HF_ENDPOINT); run the same command again to resume. Offline? Set MORRIS_BASE_MODEL to a local model folder (`morris model init-tiny models/tiny` makes a test one).',
    cause: e,
  });
}

/** Picks the files to fetch from the repo listing; fails if there is no tokenizer.json or no safetensors. */
export function selectFiles(entries: readonly ListFileEntry[], repoId: string): ListFileEntry[] {
  const files = entries.filter((e) => e.type === 'file' && WANTED.some((re) => re.test(e.path)));
  const names = new Set(files.map((f) => f.path));
  const sharded = names.has('model.safetensors.index.json');
  const chosen = files.filter((f) => (sharded ? f.path !== 'model.safetensors' : !/^model-\d+-of-\d+/.test(f.path)));
  if (!names.has('config.json')) throw new MorrisError('MODEL_UNSUPPORTED', `${repoId} has no config.json at its root; it is not a transformers checkpoint.`);
  if (!names.has('tokenizer.json')) {
    throw new MorrisError('MODEL_UNSUPPORTED', `${repoId} has no tokenizer.json (only slow-tokenizer files); it cannot be loaded here.`, {
      hint: 'Pick a repo that ships tokenizer.json (most recent Llama, Mistral, Qwen2 and SmolLM2 repos do).',
    });
  }
  if (!sharded && !names.has('model.safetensors')) {
    throw new MorrisError('MODEL_UNSUPPORTED', `${repoId} has no safetensors weights (model.safetensors or a shard index).`, {
      hint: 'Only safetensors checkpoints are supported; PyTorch .bin files are not loaded, for safety.',
    });
  }
  return chosen;
}

function expectedSize(e: ListFileEntry): number {
  return e.lfs?.size ?? e.size;
}

async function hashFile(file: string, hash: ReturnType<typeof createHash>): Promise<void> {
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
}

/** What every @huggingface/hub call here gets. */
interface HubParams {
  repo: { type: 'model'; name: string };
  revision: string;
  hubUrl?: string;
  accessToken?: `hf_${string}`;
  fetch?: typeof fetch;
}

export async function pullModel(repoId: string, opts: PullOptions): Promise<PullResult> {
  if (!REPO_ID.test(repoId)) throw new MorrisError('BAD_INPUT', `"${repoId}" is not a Hub repo id.`, { hint: 'Use owner/name, e.g. HuggingFaceTB/SmolLM2-360M-Instruct.' });
  const common: HubParams = {
    repo: { type: 'model', name: repoId },
    revision: opts.revision ?? 'main',
    ...(opts.endpoint ? { hubUrl: opts.endpoint.replace(/\/+$/, '') } : {}),
    ...(opts.token ? { accessToken: opts.token as `hf_${string}` } : {}),
    ...(opts.fetch ? { fetch: opts.fetch } : {}),
  };
  let entries: ListFileEntry[] = [];
  try {
    for await (const e of listFiles({ ...common, recursive: false })) entries.push(e);
  } catch (e) {
    throw hubError(e, repoId, 'listing its files');
  }
  const files = selectFiles(entries, repoId);
  const total = files.reduce((n, f) => n + expectedSize(f), 0);
  try {
    mkdirSync(opts.destDir, { recursive: true });
  } catch (e) {
    throw wrapFsError(e, opts.destDir);
  }
  log.info({ repoId, files: files.length, bytes: total, destDir: opts.destDir }, 'pulling model');
  rmSync(join(opts.destDir, PULL_MARKER), { force: true });
  writeFileSync(join(opts.destDir, PULL_IN_PROGRESS), `${repoId}@${common.revision}\n`);

  let doneBefore = 0;
  let bytesDownloaded = 0;
  const result: PulledFile[] = [];
  for (const [i, entry] of files.entries()) {
    const size = expectedSize(entry);
    const report = (fileBytes: number) =>
      opts.onProgress?.({ file: entry.path, fileIndex: i, fileCount: files.length, fileBytes, fileTotal: size, bytes: doneBefore + fileBytes, total });
    const { action, downloaded } = await pullOneFile(repoId, entry, opts.destDir, common, report);
    result.push({ path: entry.path, size, action });
    bytesDownloaded += downloaded;
    report(size);
    doneBefore += size;
  }
  inlineChatTemplate(opts.destDir);
  writeFileSync(join(opts.destDir, PULL_MARKER), JSON.stringify({ repoId, revision: common.revision, files: result.map((f) => ({ path: f.path, size: f.size })), at: new Date().toISOString() }, null, 2) + '\n');
  rmSync(join(opts.destDir, PULL_IN_PROGRESS), { force: true });
  return { dir: opts.destDir, repoId, files: result, bytesDownloaded };
}

async function pullOneFile(
  repoId: string,
  entry: ListFileEntry,
  destDir: string,
  common: HubParams,
  report: (fileBytes: number) => void,
): Promise<{ action: PulledFile['action']; downloaded: number }> {
  const size = expectedSize(entry);
  const dest = join(destDir, entry.path);
  const part = `${dest}.incomplete`;
  mkdirSync(dirname(dest), { recursive: true });
  if (existsSync(dest)) {
    // Files are renamed into place only after they were verified, so the size is enough here.
    if (statSync(dest).size === size) return { action: 'skipped', downloaded: 0 };
    rmSync(dest);
  }
  let offset = existsSync(part) ? statSync(part).size : 0;
  if (offset > size) {
    rmSync(part);
    offset = 0;
  }
  let blob: Blob | null;
  try {
    blob = await downloadFile({ ...common, path: entry.path, xet: false });
  } catch (e) {
    throw hubError(e, repoId, `fetching ${entry.path}`);
  }
  if (!blob) throw new MorrisError('NOT_FOUND', `${entry.path} is listed in ${repoId} but cannot be downloaded.`);
  if (blob.size !== size) {
    throw new MorrisError('FETCH_FAILED', `Size mismatch for ${entry.path}: the listing says ${size} bytes, the server offers ${blob.size}.`, {
      hint: 'The repo changed during the download or the server is misbehaving; run the pull again.',
    });
  }
  const hash = entry.lfs ? createHash('sha256') : null;
  if (hash && offset > 0) await hashFile(part, hash);
  report(offset);
  let received = 0;
  if (offset < size) {
    const counter = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        received += chunk.length;
        hash?.update(chunk);
        report(offset + received);
        cb(null, chunk);
      },
    });
    const out = createWriteStream(part, { flags: 'a' });
    try {
      // slice(offset) makes the client send `Range: bytes=offset-` (a plain GET when offset is 0).
      const body = Readable.fromWeb(blob.slice(offset).stream() as unknown as WebReadableStream<Uint8Array>);
      await pipeline(body, counter, out);
    } catch (e) {
      // A write still in flight when the download broke would land after a resume had measured
      // the partial file (and be appended twice): wait until the file is closed.
      if (!out.closed) await new Promise<void>((resolve) => out.once('close', () => resolve()));
      const diskFull = wrapFsError(e, part);
      throw diskFull !== e ? diskFull : hubError(e, repoId, `downloading ${entry.path} (${offset + received} of ${size} bytes kept for resuming)`);
    }
  }
  const got = statSync(part).size;
  if (got !== size) {
    if (got > size) rmSync(part);
    throw new MorrisError('FETCH_FAILED', `Size mismatch for ${entry.path}: expected ${size} bytes, got ${got}.`, {
      hint: got < size ? 'The download was cut short; run the same command again to resume.' : 'The partial file was removed; run the pull again.',
    });
  }
  if (hash && entry.lfs) {
    const digest = hash.digest('hex');
    if (digest !== entry.lfs.oid) {
      rmSync(part);
      throw new MorrisError('FETCH_FAILED', `Checksum mismatch for ${entry.path}: sha256 ${digest}, the Hub says ${entry.lfs.oid}.`, {
        hint: 'The corrupt file was removed; run the pull again.',
      });
    }
  }
  renameSync(part, dest);
  return { action: offset > 0 ? 'resumed' : 'downloaded', downloaded: received };
}

/**
 * transformers.js reads the chat template only from tokenizer_config.json; newer repos keep it
 * in chat_template.jinja, so it is copied in when the config has none.
 */
function inlineChatTemplate(dir: string): void {
  const jinja = join(dir, 'chat_template.jinja');
  const cfgFile = join(dir, 'tokenizer_config.json');
  if (!existsSync(jinja) || !existsSync(cfgFile)) return;
  let cfg: Record<string, unknown>;
  try {
    cfg = JSON.parse(readFileSync(cfgFile, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new MorrisError('MODEL_INVALID', `${cfgFile} is not valid JSON, so the chat template cannot be added to it.`, { cause: e });
  }
  if (cfg['chat_template']) return;
  cfg['chat_template'] = readFileSync(jinja, 'utf8');
  writeFileSync(cfgFile, JSON.stringify(cfg, null, 2) + '\n');
}

/** True when `dir` holds a finished pull (or any checkpoint that did not come from a pull). */
export function isCompleteModelDir(dir: string): boolean {
  if (existsSync(join(dir, PULL_MARKER))) return true;
  if (!existsSync(join(dir, 'config.json'))) return false;
  if (readdirSync(dir).some((f) => f.endsWith('.incomplete'))) return false;
  return existsSync(join(dir, 'model.safetensors')) || existsSync(join(dir, 'model.safetensors.index.json'));
}

/**
 * The base model folder for MORRIS_BASE_MODEL: a local folder is used as is; a Hub repo id is
 * pulled into MORRIS_MODELS_DIR on first use (and resumed if a previous pull was interrupted).
 */
export async function resolveBaseModel(
  config: Pick<Config, 'MORRIS_BASE_MODEL' | 'MORRIS_MODELS_DIR' | 'HF_ENDPOINT' | 'HF_TOKEN'>,
  opts: { onProgress?: (p: PullProgress) => void; fetch?: typeof fetch } = {},
): Promise<string> {
  const setting = config.MORRIS_BASE_MODEL;
  const dir = baseModelLocation(setting, config.MORRIS_MODELS_DIR);
  const isRepoId = REPO_ID.test(setting) && !existsSync(setting) && !setting.startsWith('.');
  if (!isRepoId) {
    if (!existsSync(join(dir, 'config.json'))) {
      throw new MorrisError('MODEL_MISSING', `MORRIS_BASE_MODEL points at ${dir}, which holds no model (config.json is missing).`, {
        hint: 'Set MORRIS_BASE_MODEL to a checkpoint folder or a Hub repo id, or run `morris model init-tiny models/tiny`.',
      });
    }
    return dir;
  }
  if (isCompleteModelDir(dir)) return dir;
  log.info({ repoId: setting, dir }, 'base model not on disk yet; pulling it from the Hub');
  await pullModel(setting, {
    destDir: dir,
    endpoint: config.HF_ENDPOINT,
    ...(config.HF_TOKEN ? { token: config.HF_TOKEN } : {}),
    ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
    ...(opts.fetch ? { fetch: opts.fetch } : {}),
  });
  return dir;
}
