/**
 * `morris generate` and `morris model …` through the real CLI (node bin/morris.mjs), on the real
 * engine: the tiny random model, and stories260K's golden greedy outputs from llama2.c.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Command } from 'commander';
import { createCliContext } from '../../src/cli/context.ts';
import { register as registerModelCli } from '../../src/cli/model.ts';
import { initTinyModel } from '../../src/model/tiny/index.ts';
import { startFakeHub, type FakeHub } from './fake-hub.ts';
import { runMorris, type CliResult } from '../morris-cli.ts';

const STORIES = resolve('../shared/models/stories260K');
const root = mkdtempSync(join(tmpdir(), 'morris-cli-gen-'));
const tiny = join(root, 'models', 'tiny');
afterAll(() => rmSync(root, { recursive: true, force: true }));

function morris(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return runMorris(args, {
    cwd: root, // no stray .env from the repo
    env: { PATH: process.env['PATH'] ?? '', HOME: root, MORRIS_DATA_DIR: join(root, 'data'), MORRIS_MODELS_DIR: join(root, 'models'), LOG_LEVEL: 'warn', ...env },
    timeoutMs: 120_000,
  });
}

beforeAll(() => {
  initTinyModel(tiny, { arch: 'llama', seed: 11 });
});

// Each test spawns the CLI (tsx + transformers.js start-up): generous limits for busy CI machines.
const SLOW = { timeout: 180_000 };

describe.concurrent('morris generate on the tiny model', SLOW, () => {
  it('streams a greedy article; --batch gives the same text as JSON lines and reports bad topics', async () => {
    const one = await morris(['generate', '--model', tiny, '--temperature', '0', '--max-new-tokens', '16', 'late trains']);
    expect(one.code, one.stderr).toBe(0);
    // The article, then its attribution line, as every article that leaves Morris.
    const trailer = '\n\nAI-generated in the style of a veteran British telecoms columnist — not written by them\n';
    expect(one.stdout.endsWith(trailer)).toBe(true);
    const text = one.stdout.slice(0, -trailer.length);
    expect(text.length).toBeGreaterThan(0);

    const batchFile = join(root, 'topics.txt');
    writeFileSync(batchFile, ['late trains', '# a comment', '', 'the price of bread', 'x'.repeat(100_000)].join('\n'));
    const batch = await morris(['generate', '--model', tiny, '--temperature', '0', '--max-new-tokens', '16', '--batch', batchFile]);
    expect(batch.code, batch.stderr).toBe(0);
    const lines = batch.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatchObject({ topic: 'late trains', text, cut: false, adapterId: null, tokens: 16, reason: 'length' });
    expect(lines[0].article).toBe(`${text.trim()}${trailer.trimEnd()}`);
    expect(lines[1]).toMatchObject({ topic: 'the price of bread', cut: false, tokens: 16 });
    expect(lines[2].error).toMatchObject({ code: 'BAD_INPUT' });
    expect(lines[2].error.message).toContain('limit is 300');
  });

  it('--seed makes sampling reproducible (without it every request draws a fresh seed)', async () => {
    writeFileSync(join(root, 'seeded.txt'), 'trains\ntrains\n');
    const a = await morris(['generate', '--model', tiny, '--temperature', '1', '--top-k', '0', '--seed', '7', '--max-new-tokens', '24', '--batch', join(root, 'seeded.txt')]);
    expect(a.code, a.stderr).toBe(0);
    const [a1, a2] = a.stdout.trim().split('\n').map((l) => JSON.parse(l).text);
    expect(a1.length).toBeGreaterThan(0);
    expect(a1).toBe(a2);
  });

  it('fails clearly on an empty topic, a missing model and a missing adapter (a 100 kB topic: see the batch test)', async () => {
    const [empty, missing, noAdapter] = await Promise.all([
      morris(['generate', '--model', tiny, '']),
      morris(['generate', '--model', join(root, 'nope'), 'trains']),
      morris(['generate', '--model', tiny, '--adapter', join(root, 'no-adapter'), 'trains']),
    ]);
    expect(empty.code).toBe(1);
    expect(empty.stderr).toMatch(/No topic given[\s\S]*Usage/);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('No model folder');
    expect(noAdapter.code).toBe(1);
    expect(noAdapter.stderr).toMatch(/No adapter at .*no-adapter \(adapter_config\.json is missing\)[\s\S]*--adapter none/);
  });
});

describe.concurrent('morris model', SLOW, () => {
  let hub: FakeHub;
  beforeAll(async () => {
    hub = await startFakeHub();
    const files = new Map<string, { data: Buffer; lfs: boolean }>();
    for (const f of ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json']) {
      files.set(f, { data: readFileSync(join(tiny, f)), lfs: f.endsWith('.safetensors') });
    }
    hub.repos.set('acme/tiny-chat', files);
  });
  afterAll(() => hub.close());

  it('pull downloads into MORRIS_MODELS_DIR and list shows it with size and memory', async () => {
    const pull = await morris(['model', 'pull', 'acme/tiny-chat'], { HF_ENDPOINT: hub.url });
    expect(pull.code, pull.stderr).toBe(0);
    const dest = join(root, 'models', 'acme--tiny-chat');
    expect(pull.stdout).toContain(`${dest}: 6 files (6 fetched`);
    expect(readFileSync(join(dest, 'model.safetensors')).equals(readFileSync(join(tiny, 'model.safetensors')))).toBe(true);

    const list = await morris(['model', 'list', '--json']);
    expect(list.code, list.stderr).toBe(0);
    const { models } = JSON.parse(list.stdout);
    expect(models.map((m: { name: string }) => m.name).sort()).toEqual(['acme--tiny-chat', 'tiny']);
    expect(models[0]).toMatchObject({ architecture: 'llama (LlamaForCausalLM)', dtype: 'F32' });
    expect(models[0].serveBytes).toBeGreaterThan(models[0].weightBytes);
  });

  it('merge folds an adapter into a standalone model that writes what base + adapter writes', async () => {
    const { openCheckpoint } = await import('../../src/model/checkpoint/config.ts');
    const { writeRandomAdapter } = await import('../../src/model/checkpoint/random-checkpoint.ts');
    const lora = join(root, 'adapters', 'lora-a');
    writeRandomAdapter(lora, openCheckpoint(tiny).config, { r: 4, alpha: 16, targets: ['q_proj', 'v_proj', 'up_proj'], seed: 3 });
    const out = join(root, 'merged');
    const merge = await morris(['model', 'merge', '--model', tiny, '--adapter', lora, '--out', out]);
    expect(merge.code, merge.stderr).toBe(0);
    expect(merge.stdout).toContain(`${out}: merged 6 tensors`);
    const topics = join(root, 'merge-topics.txt');
    writeFileSync(topics, 'late trains\n');
    const greedy = ['--temperature', '0', '--max-new-tokens', '12', '--batch', topics];
    const [withAdapter, merged] = await Promise.all([
      morris(['generate', '--model', tiny, '--adapter', lora, ...greedy]),
      morris(['generate', '--model', out, '--adapter', 'none', ...greedy]),
    ]);
    expect(withAdapter.code, withAdapter.stderr).toBe(0);
    const a = JSON.parse(withAdapter.stdout);
    expect(a.adapterId).toBe(lora);
    expect(JSON.parse(merged.stdout).text).toBe(a.text);
  });

  it('init-tiny writes the same model as the library, in the Hub layout; subcommands have usage help', async () => {
    const out = join(root, 'tiny-qwen-cli'); // outside models/, which the list test counts
    const r = await morris(['model', 'init-tiny', out, '--arch', 'qwen2', '--seed', '3']);
    expect(r.code, r.stderr).toBe(0);
    const ref = join(root, 'tiny-qwen-reference');
    const info = initTinyModel(ref, { arch: 'qwen2', seed: 3 });
    expect(r.stdout).toBe(`${out}: qwen2, ${(info.parameters / 1e3).toFixed(1)}K parameters, vocab ${info.dims.vocab}, seed 3\n`);
    for (const f of ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json']) {
      expect(readFileSync(join(out, f)).equals(readFileSync(join(ref, f))), f).toBe(true);
    }
    // Usage help without a process of its own: the same commander wiring the CLI uses.
    const program = new Command('morris').exitOverride();
    registerModelCli(program, createCliContext());
    const pull = program.commands.find((c) => c.name() === 'model')!.commands.find((c) => c.name() === 'pull')!;
    expect(pull.helpInformation()).toMatch(/Usage: morris model pull \[options\] <repo-id>/);
  });
});

const golden = existsSync(join(STORIES, 'GOLDEN.json'))
  ? (JSON.parse(readFileSync(join(STORIES, 'GOLDEN.json'), 'utf8')) as { n_positions: number; prompts: { prompt: string; input_ids: number[]; text: string; continuation_text: string }[] })
  : null;

const storiesTitle = golden ? 'stories260K through the CLI' : `stories260K through the CLI — SKIPPED: ${STORIES} is missing (CI always has ../shared)`;
if (!golden) console.warn(storiesTitle);

describe.skipIf(!golden)(storiesTitle, { ...SLOW, concurrent: true }, () => {
  it('`morris generate --model ../shared/models/stories260K --raw --temperature 0 "Once upon a time"` prints the golden text', async () => {
    const r = await morris(['generate', '--model', STORIES, '--raw', '--temperature', '0', 'Once upon a time']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.startsWith(golden!.prompts[0]!.text)).toBe(true);
  });

  it('reproduces every golden continuation (batch, raw, greedy)', async () => {
    const file = join(root, 'stories.txt');
    writeFileSync(file, golden!.prompts.map((p) => p.prompt).join('\n'));
    const longest = Math.max(...golden!.prompts.map((p) => golden!.n_positions + 1 - p.input_ids.length));
    const r = await morris(['generate', '--model', STORIES, '--raw', '--temperature', '0', '--max-new-tokens', String(longest), '--batch', file]);
    expect(r.code, r.stderr).toBe(0);
    const results = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    golden!.prompts.forEach((p, i) => {
      expect(results[i].topic).toBe(p.prompt);
      // Exact where the golden ran as many steps as we did; a prefix where it ran fewer.
      if (golden!.n_positions + 1 - p.input_ids.length === longest) expect(results[i].text).toBe(p.continuation_text);
      else expect(results[i].text.startsWith(p.continuation_text)).toBe(true);
    });
  });
});
