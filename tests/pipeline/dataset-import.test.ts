import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { datasetFiles } from '../../src/pipeline/dataset.ts';
import { importDataset } from '../../src/pipeline/dataset-import.ts';
import { openStore } from '../../src/store/db.ts';

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
