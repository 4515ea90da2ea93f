import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { pullModel, resolveBaseModel, PULL_MARKER, type PullProgress } from '../../src/model/checkpoint/hub.ts';
import { initTinyModel } from '../../src/model/tiny/index.ts';
import { startFakeHub, type FakeHub, type FakeFile } from './fake-hub.ts';

const REPO = 'morris-test/tiny-llama';
const root = mkdtempSync(join(tmpdir(), 'morris-hub-'));
let hub: FakeHub;
let source: string;
let n = 0;
const fresh = () => join(root, `dest-${++n}`);

function repoFiles(dir: string): Map<string, FakeFile> {
  const files = new Map<string, FakeFile>();
  for (const f of readdirSync(dir)) files.set(f, { data: readFileSync(join(dir, f)), lfs: f.endsWith('.safetensors') });
  // Things a real repo carries that a pull must leave out.
  files.set('README.md', { data: Buffer.from('# tiny\n'), lfs: false });
  files.set('pytorch_model.bin', { data: Buffer.alloc(64, 1), lfs: true });
  files.set('onnx/model.onnx', { data: Buffer.alloc(32, 2), lfs: true });
  return files;
}

beforeAll(async () => {
  source = join(root, 'source');
  initTinyModel(source, { arch: 'llama', seed: 5 });
  hub = await startFakeHub();
});
afterAll(async () => {
  await hub.close();
  rmSync(root, { recursive: true, force: true });
});
beforeEach(() => {
  hub.repos.set(REPO, repoFiles(source));
  hub.requests.length = 0;
  hub.cutAfter.clear();
  hub.sizeDelta.clear();
  hub.badSha.clear();
  hub.tokens.clear();
});

const contentRequests = () => hub.requests.filter((r) => (r.url.includes('/resolve/') || r.url.startsWith('/cdn/')) && r.range !== 'bytes=0-0');

describe('pullModel against a local fake Hub', () => {
  it('downloads config, tokenizer and weights (and nothing else), byte for byte, with progress', async () => {
    const dest = fresh();
    const progress: PullProgress[] = [];
    const res = await pullModel(REPO, { destDir: dest, endpoint: hub.url, onProgress: (p) => progress.push(p) });
    const expected = ['config.json', 'generation_config.json', 'model.safetensors', 'special_tokens_map.json', 'tokenizer.json', 'tokenizer_config.json'];
    expect(res.files.map((f) => f.path).sort()).toEqual(expected);
    expect(res.files.every((f) => f.action === 'downloaded')).toBe(true);
    for (const f of expected) expect(readFileSync(join(dest, f)).equals(readFileSync(join(source, f)))).toBe(true);
    expect(existsSync(join(dest, 'pytorch_model.bin'))).toBe(false);
    expect(existsSync(join(dest, 'onnx'))).toBe(false);
    expect(existsSync(join(dest, PULL_MARKER))).toBe(true);
    const total = expected.reduce((s, f) => s + statSync(join(source, f)).size, 0);
    expect(res.bytesDownloaded).toBe(total);
    expect(progress.at(-1)).toMatchObject({ bytes: total, total });
    for (let i = 1; i < progress.length; i++) expect(progress[i]!.bytes).toBeGreaterThanOrEqual(progress[i - 1]!.bytes);
    // The listing endpoint and the LFS redirect were used the way the Hub serves them.
    expect(hub.requests.some((r) => r.url.startsWith(`/api/models/${REPO}/tree/main`))).toBe(true);
    expect(hub.requests.some((r) => r.url === `/cdn/${REPO}/model.safetensors`)).toBe(true);
  });

  it('does not download complete files again', async () => {
    const dest = fresh();
    await pullModel(REPO, { destDir: dest, endpoint: hub.url });
    hub.requests.length = 0;
    const again = await pullModel(REPO, { destDir: dest, endpoint: hub.url });
    expect(again.files.every((f) => f.action === 'skipped')).toBe(true);
    expect(again.bytesDownloaded).toBe(0);
    expect(contentRequests()).toEqual([]);
  });

  it('resumes an interrupted download with a Range request and verifies the sha256', async () => {
    const dest = fresh();
    const size = statSync(join(source, 'model.safetensors')).size;
    const cut = Math.floor(size / 2);
    hub.cutAfter.set('model.safetensors', cut);
    await expect(pullModel(REPO, { destDir: dest, endpoint: hub.url })).rejects.toMatchObject({ code: 'FETCH_FAILED', message: expect.stringContaining('kept for resuming') });
    const partial = join(dest, 'model.safetensors.incomplete');
    expect(existsSync(partial)).toBe(true);
    const kept = statSync(partial).size;
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThanOrEqual(cut);
    expect(existsSync(join(dest, 'model.safetensors'))).toBe(false);
    expect(existsSync(join(dest, PULL_MARKER))).toBe(false);

    const completeBefore = readdirSync(dest).filter((f) => !f.endsWith('.incomplete')).reduce((s, f) => s + statSync(join(dest, f)).size, 0);
    const total = readdirSync(source).reduce((s, f) => s + statSync(join(source, f)).size, 0);
    hub.requests.length = 0;
    const res = await pullModel(REPO, { destDir: dest, endpoint: hub.url });
    expect(res.files.find((f) => f.path === 'model.safetensors')?.action).toBe('resumed');
    const ranged = contentRequests().filter((r) => r.url.endsWith('model.safetensors'));
    expect(ranged.map((r) => r.range)).toEqual([`bytes=${kept}-${size - 1}`]);
    // Only the missing part and the files not yet fetched come over the wire.
    expect(res.bytesDownloaded).toBe(total - completeBefore - kept);
    expect(readFileSync(join(dest, 'model.safetensors')).equals(readFileSync(join(source, 'model.safetensors')))).toBe(true);
    expect(existsSync(partial)).toBe(false);
  });

  it('rejects a file whose size differs from the listing', async () => {
    hub.sizeDelta.set('model.safetensors', 10);
    const dest = fresh();
    await expect(pullModel(REPO, { destDir: dest, endpoint: hub.url })).rejects.toMatchObject({ code: 'FETCH_FAILED', message: expect.stringMatching(/Size mismatch for model\.safetensors/) });
    expect(existsSync(join(dest, 'model.safetensors'))).toBe(false);
  });

  it('rejects and removes a file whose sha256 differs from the LFS oid', async () => {
    hub.badSha.add('model.safetensors');
    const dest = fresh();
    await expect(pullModel(REPO, { destDir: dest, endpoint: hub.url })).rejects.toMatchObject({ code: 'FETCH_FAILED', message: expect.stringContaining('Checksum mismatch') });
    expect(existsSync(join(dest, 'model.safetensors'))).toBe(false);
    expect(existsSync(join(dest, 'model.safetensors.incomplete'))).toBe(false);
  });

  it('gives clear errors for a missing repo, a gated repo, a bad id and a repo without safetensors', async () => {
    await expect(pullModel('nobody/nothing', { destDir: fresh(), endpoint: hub.url })).rejects.toMatchObject({ code: 'NOT_FOUND' });
    hub.tokens.set(REPO, 'hf_secret');
    await expect(pullModel(REPO, { destDir: fresh(), endpoint: hub.url })).rejects.toMatchObject({ code: 'FORBIDDEN', hint: expect.stringContaining('HF_TOKEN') });
    const ok = await pullModel(REPO, { destDir: fresh(), endpoint: hub.url, token: 'hf_secret' });
    expect(ok.files).toHaveLength(6);
    await expect(pullModel('../etc/passwd', { destDir: fresh(), endpoint: hub.url })).rejects.toMatchObject({ code: 'BAD_INPUT' });
    const binOnly = repoFiles(source);
    binOnly.delete('model.safetensors');
    hub.repos.set('morris-test/bin-only', binOnly);
    await expect(pullModel('morris-test/bin-only', { destDir: fresh(), endpoint: hub.url })).rejects.toMatchObject({ code: 'MODEL_UNSUPPORTED' });
  });

  it('fetches sharded checkpoints (index + every shard) and inlines chat_template.jinja', async () => {
    const files = repoFiles(source);
    const weights = files.get('model.safetensors')!;
    files.delete('model.safetensors');
    files.set('model-00001-of-00002.safetensors', { data: weights.data, lfs: true });
    files.set('model-00002-of-00002.safetensors', { data: weights.data, lfs: true });
    files.set('model.safetensors.index.json', { data: Buffer.from('{"weight_map":{}}'), lfs: false });
    const cfg = JSON.parse(files.get('tokenizer_config.json')!.data.toString());
    const template = cfg.chat_template;
    delete cfg.chat_template;
    files.set('tokenizer_config.json', { data: Buffer.from(JSON.stringify(cfg)), lfs: false });
    files.set('chat_template.jinja', { data: Buffer.from(template), lfs: false });
    hub.repos.set('morris-test/sharded', files);
    const dest = fresh();
    const res = await pullModel('morris-test/sharded', { destDir: dest, endpoint: hub.url });
    expect(res.files.map((f) => f.path).filter((p) => p.includes('safetensors')).sort()).toEqual(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json']);
    expect(JSON.parse(readFileSync(join(dest, 'tokenizer_config.json'), 'utf8')).chat_template).toBe(template);
  });
});

describe('resolveBaseModel', () => {
  const config = (setting: string, modelsDir: string) => ({ MORRIS_BASE_MODEL: setting, MORRIS_MODELS_DIR: modelsDir, HF_ENDPOINT: hub.url, HF_TOKEN: undefined });

  it('uses a local folder as is and pulls a repo id into the models dir on first use only', async () => {
    expect(await resolveBaseModel(config(source, join(root, 'unused')))).toBe(source);
    const modelsDir = join(root, 'models');
    const dir = await resolveBaseModel(config(REPO, modelsDir));
    expect(dir).toBe(join(modelsDir, 'morris-test--tiny-llama'));
    expect(readFileSync(join(dir, 'model.safetensors')).equals(readFileSync(join(source, 'model.safetensors')))).toBe(true);
    hub.requests.length = 0;
    expect(await resolveBaseModel(config(REPO, modelsDir))).toBe(dir);
    expect(hub.requests).toEqual([]);
  });

  it('a pull that failed between files is finished on the next use, not taken as a model', async () => {
    const modelsDir = join(root, 'models-interrupted');
    // The network drops just as tokenizer.json is requested: config and weights are already in place.
    let drops = 1;
    const flaky: typeof fetch = (input, init) => {
      const url = input instanceof Request ? input.url : String(input);
      if (url.endsWith('/tokenizer.json') && drops-- > 0) return Promise.reject(new TypeError('fetch failed'));
      return fetch(input, init);
    };
    await expect(resolveBaseModel(config(REPO, modelsDir), { fetch: flaky })).rejects.toMatchObject({ code: 'FETCH_FAILED' });
    const dir = join(modelsDir, 'morris-test--tiny-llama');
    expect(existsSync(join(dir, 'model.safetensors'))).toBe(true);
    expect(existsSync(join(dir, 'tokenizer.json'))).toBe(false);
    hub.requests.length = 0;
    expect(await resolveBaseModel(config(REPO, modelsDir))).toBe(dir);
    expect(readFileSync(join(dir, 'tokenizer.json')).equals(readFileSync(join(source, 'tokenizer.json')))).toBe(true);
    // Only what was missing came over the wire.
    expect(contentRequests().map((r) => r.url.split('/').at(-1)).sort()).toEqual(['tokenizer.json', 'tokenizer_config.json']);
    expect(existsSync(join(dir, PULL_MARKER))).toBe(true);
  });

  it('a local path without a model is MODEL_MISSING', async () => {
    const empty = join(root, 'empty-model');
    mkdirSync(empty);
    writeFileSync(join(empty, 'notes.txt'), 'x');
    await expect(resolveBaseModel(config(empty, root))).rejects.toMatchObject({ code: 'MODEL_MISSING' });
  });
});
