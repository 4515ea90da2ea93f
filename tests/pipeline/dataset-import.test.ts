import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { datasetFiles } from '../../src/pipeline/dataset/versions.ts';
import { importDataset } from '../../src/pipeline/dataset/import.ts';
import { openStore } from '../../src/store/db.ts';
import { runNode } from '../morris-cli.ts';

const root = mkdtempSync(join(tmpdir(), 'morris-import-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const conv = (i: number, split?: string) =>
  JSON.stringify({ ...(split ? { split } : {}), messages: [{ role: 'user', content: `q${i}` }, { role: 'assistant', content: `a${i}` }] });

describe('importDataset', () => {
  it('turns messages JSONL into a content-addressed dataset version, rejecting bad lines by number', () => {
    const store = openStore(join(root, 'a.db'));
    const file = join(root, 'in.jsonl');
    writeFileSync(file, [conv(1), 'not json', conv(2, 'validation'), '{"messages":[{"role":"user","content":"only a question"}]}', conv(3, 'train'), '{"messages":[{"role":"robot","content":"x"}]}'].join('\n'));
    const r = importDataset(store, file, undefined, { outDir: join(root, 'out') });
    expect(r).toMatchObject({ created: true, train: 2, validation: 1 });
    expect(r.rejected).toEqual([
      { line: 2, reason: 'not JSON' },
      { line: 4, reason: 'no assistant reply' },
      { line: 6, reason: 'unknown role "robot"' },
    ]);
    const ds = store.prepare('SELECT origin, train_count, val_count, jsonl_path FROM datasets WHERE id = ?').get(r.id) as Record<string, unknown>;
    expect(ds).toMatchObject({ origin: 'import', train_count: 2, val_count: 1 });
    // The same JSONL files a build writes: all examples, and one file per split.
    const lines = (f: string) => readFileSync(f, 'utf8').trim().split('\n').map((l) => JSON.parse(l).messages[1].content);
    expect(lines(ds.jsonl_path as string)).toEqual(['a1', 'a2', 'a3']);
    expect(lines(datasetFiles(join(root, 'out'), r.id).train)).toEqual(['a1', 'a3']);
    expect(lines(datasetFiles(join(root, 'out'), r.id).validation)).toEqual(['a2']);
    const rows = store.prepare("SELECT split, kind, messages FROM examples WHERE dataset_id = ? ORDER BY ordinal").all(r.id) as { split: string; kind: string; messages: string }[];
    expect(rows.map((x) => [x.split, x.kind, JSON.parse(x.messages)[1].content])).toEqual([['train', 'import', 'a1'], ['validation', 'import', 'a2'], ['train', 'import', 'a3']]);
    // Same content again: the same version, nothing duplicated.
    const again = importDataset(store, file);
    expect(again).toMatchObject({ id: r.id, created: false });
    expect((store.prepare('SELECT COUNT(*) AS n FROM examples WHERE dataset_id = ?').get(r.id) as { n: number }).n).toBe(3);
    store.close();
  });

  it('keeps at least one validation example when none is marked', () => {
    const store = openStore(join(root, 'b.db'));
    const file = join(root, 'two.jsonl');
    writeFileSync(file, [conv(1, 'train'), conv(2, 'train')].join('\n'));
    expect(importDataset(store, file)).toMatchObject({ train: 1, validation: 1 });
    store.close();
  });
});

describe('importDataset: encodings, conversation shape, size', () => {
  const msgs = (...turns: [string, string][]) => JSON.stringify({ messages: turns.map(([role, content]) => ({ role, content })) });

  it('accepts a UTF-8 byte-order mark and CRLF line ends: every valid line imports', () => {
    const store = openStore(join(root, 'bom.db'));
    const file = join(root, 'bom.jsonl');
    const lines = [conv(1), conv(2), '', conv(3, 'validation'), 'not json', msgs(['user', 'Café — ✓'], ['assistant', 'Très bien'])];
    writeFileSync(file, '\uFEFF' + lines.join('\r\n') + '\r\n');
    const r = importDataset(store, file, undefined, { outDir: join(root, 'bom-out') });
    expect(r.train + r.validation).toBe(4);
    expect(r).toMatchObject({ rejectedTotal: 1, rejected: [{ line: 5, reason: 'not JSON' }] });
    const rows = store.prepare('SELECT messages FROM examples WHERE dataset_id = ? ORDER BY ordinal').all(r.id) as { messages: string }[];
    const contents = rows.map((x) => (JSON.parse(x.messages) as { content: string }[]).map((m) => m.content).join('|'));
    expect(contents).toEqual(['q1|a1', 'q2|a2', 'q3|a3', 'Café — ✓|Très bien']);
    // The same examples as the file without BOM and CR: the same dataset version.
    writeFileSync(join(root, 'plain.jsonl'), lines.join('\n'));
    expect(importDataset(store, join(root, 'plain.jsonl')).id).toBe(r.id);
    store.close();
  });

  it('refuses conversations that do not alternate user/assistant after an optional system message and end with the assistant', () => {
    const store = openStore(join(root, 'shape.db'));
    const file = join(root, 'shape.jsonl');
    writeFileSync(
      file,
      [
        msgs(['system', 's'], ['user', 'q'], ['assistant', 'a'], ['user', 'q2'], ['assistant', 'a2']), // ok: multi-turn
        msgs(['assistant', 'only me']),
        msgs(['system', 's'], ['assistant', 'first'], ['user', 'q']),
        msgs(['user', 'q'], ['user', 'q again'], ['assistant', 'a']),
        msgs(['user', 'q'], ['assistant', 'a'], ['user', 'and?']),
        msgs(['user', 'q'], ['system', 'late'], ['assistant', 'a']),
        msgs(['user', 'q'], ['assistant', '  ']),
        msgs(),
        msgs(['user', 'q'], ['assistant', 'a']), // ok
      ].join('\n'),
    );
    const r = importDataset(store, file);
    expect(r.train + r.validation).toBe(2);
    expect(r.rejected).toEqual([
      { line: 2, reason: "starts with the assistant: the first message (after an optional system message) must be the user's" },
      { line: 3, reason: "starts with the assistant: the first message (after an optional system message) must be the user's" },
      { line: 4, reason: 'message 2 is a user message after another: user and assistant must alternate' },
      { line: 5, reason: "ends with the user: the assistant's reply must come last" },
      { line: 6, reason: 'message 2 is a system message: only the first message may be one' },
      { line: 7, reason: 'the last assistant reply is empty' },
      { line: 8, reason: 'no messages' },
    ]);
    store.close();
  });

  it('streams a large file: peak memory grows by far less than the file (measured in a child process)', async () => {
    const dir = join(root, 'large');
    mkdirSync(dir);
    const file = join(dir, 'large.jsonl');
    // ~64 MB of 2 KB conversations with CRLF ends, a BOM and non-ASCII text across the read chunks.
    const body = 'The network was late again — and the vendors blamed the spectrum. '.repeat(30);
    const fd = openSync(file, 'w');
    writeSync(fd, '\uFEFF');
    let n = 0;
    while (statSync(file).size < 64e6) {
      const lines: string[] = [];
      for (let i = 0; i < 500; i++, n++) lines.push(msgs(['user', `Column ${n}`], ['assistant', `${n}: ${body}`]));
      writeSync(fd, lines.join('\r\n') + '\r\n');
    }
    closeSync(fd);
    const size = statSync(file).size;
    // A small heap limit: reading the file whole (as imports once did, ~12× its size at peak) dies
    // here; a small young generation keeps garbage that has nothing to do with the file out of the figure.
    const r = await runNode(['--max-semi-space-size=1', '--max-old-space-size=64', '--import', 'tsx', join(import.meta.dirname, 'import-memory-child.ts'), file, dir], { timeoutMs: 120_000 });
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { growthBytes: number; train: number; validation: number; rejectedTotal: number };
    expect(out.train + out.validation).toBe(n);
    expect(out.rejectedTotal).toBe(0);
    expect(out.growthBytes).toBeLessThan(size / 2);
    rmSync(dir, { recursive: true, force: true });
  }, 120_000);
});
