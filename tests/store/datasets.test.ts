/** The datasets and examples tables' owner on a real SQLite file: register once, read back in order. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openStore, type Store } from '../../src/store/db.ts';
import {
  datasetExampleRows,
  datasetExamples,
  datasetExists,
  datasetJsonlPath,
  exampleFigures,
  exampleWriter,
  getDataset,
  insertDataset,
  latestDatasetId,
  listDatasets,
  recentDatasets,
  resolveDatasetRef,
} from '../../src/store/datasets.ts';

let dir: string;
let store: Store;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'morris-datasets-'));
  store = openStore(path.join(dir, 'morris.db'));
});
afterEach(() => {
  store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const row = (id: string) => ({ id, origin: 'import' as const, settings: { valFraction: 0.1 }, stats: { lines: 2 }, trainCount: 1, valCount: 1, jsonlPath: `/d/${id}.jsonl` });
const msgs = (text: string) => JSON.stringify([{ role: 'user', content: 'q' }, { role: 'assistant', content: text }]);

describe('store/datasets', () => {
  it('registers a version once and stores its examples', () => {
    expect(datasetExists(store, 'ds-1')).toBe(false);
    expect(insertDataset(store, row('ds-1'))).toBe(true);
    expect(insertDataset(store, row('ds-1'))).toBe(false);
    const add = exampleWriter(store, 'ds-1');
    add({ split: 'validation', kind: 'import', articleId: null, messages: msgs('b'), nTokens: 7, ordinal: 0 });
    add({ split: 'train', kind: 'import', articleId: null, messages: msgs('a'), nTokens: 5, ordinal: 1 });
    expect(datasetExists(store, 'ds-1')).toBe(true);
    expect(getDataset(store, 'ds-1')).toMatchObject({ origin: 'import', train_count: 1, val_count: 1, settings: '{"valFraction":0.1}', jsonl_path: '/d/ds-1.jsonl' });
    expect(datasetJsonlPath(store, 'ds-1')).toBe('/d/ds-1.jsonl');
    // In file order for the whole dataset; by split for training.
    expect(datasetExamples(store, 'ds-1').map((e) => e.messages)).toEqual([msgs('b'), msgs('a')]);
    expect(datasetExampleRows(store, 'ds-1').map((e) => e.split)).toEqual(['train', 'validation']);
    expect(datasetExamples(store, 'ds-1', 'train').map((e) => e.n_tokens)).toEqual([5]);
    // The figures come in no particular order.
    expect(exampleFigures(store, 'ds-1').sort((x, y) => x.n_tokens! - y.n_tokens!)).toEqual([
      { split: 'train', kind: 'import', article_id: null, n_tokens: 5 },
      { split: 'validation', kind: 'import', article_id: null, n_tokens: 7 },
    ]);
  });

  it('lists newest first and resolves references', () => {
    insertDataset(store, row('ds-aa1'));
    insertDataset(store, row('ds-bb2'));
    expect(listDatasets(store).map((d) => d.id)).toEqual(['ds-bb2', 'ds-aa1']);
    expect(recentDatasets(store, 1).map((d) => d.id)).toEqual(['ds-bb2']);
    expect(latestDatasetId(store)).toBe('ds-bb2');
    expect(resolveDatasetRef(store, 'latest')).toBe('ds-bb2');
    expect(resolveDatasetRef(store, 'ds-aa')).toBe('ds-aa1');
    expect(resolveDatasetRef(store, 'ds-')).toBeUndefined();
  });

  it('names the missing dataset', () => {
    expect(() => getDataset(store, 'ds-none')).toThrow(/No dataset ds-none/);
  });
});
