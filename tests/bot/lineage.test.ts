/**
 * The lineage footer names how fresh the voice is: the newest publication date among the articles
 * the adapter's dataset was built from (a real SQLite file with real articles and examples).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { lineageLine } from '../../src/bot/feedback-ui.ts';
import { datasetNewestArticle, lineageOf } from '../../src/bot/lineage.ts';
import { articleByUrl, saveArticle } from '../../src/store/articles.ts';
import { exampleWriter, insertDataset } from '../../src/store/datasets.ts';
import { tempStore } from './helpers.ts';

let cleanup: (() => void) | undefined;
afterEach(() => cleanup?.());

describe('lineage', () => {
  it('names the dataset’s newest article by date; undated or unknown datasets say nothing', () => {
    const t = tempStore();
    cleanup = t.cleanup;
    const { store } = t;
    const article = (url: string, published: string | null) => {
      saveArticle(store, { source: 's', url, title: url, author: null, published, body: 'Body.', contentHash: url });
      return articleByUrl(store, url)!.id;
    };
    const ids = [article('https://x/1', '2026-10-01T08:00:00Z'), article('https://x/2', '2026-11-30T09:30:00Z'), article('https://x/3', null), article('https://x/4', '2026-12-24')];
    const dataset = (id: string, articleIds: (number | null)[]) => {
      insertDataset(store, { id, origin: 'build', settings: {}, stats: {}, trainCount: articleIds.length, valCount: 0, jsonlPath: null });
      const write = exampleWriter(store, id);
      articleIds.forEach((a, n) => write({ split: 'train', kind: a === null ? 'extra' : 'article', articleId: a, messages: '[]', nTokens: 1, ordinal: n }));
    };
    dataset('ds-a', [ids[0]!, ids[1]!, ids[2]!, null]);
    dataset('ds-undated', [ids[2]!, null]);
    expect(datasetNewestArticle(store, 'ds-a')).toBe('2026-11-30');
    expect(datasetNewestArticle(store, 'ds-undated')).toBeNull();
    expect(datasetNewestArticle(store, 'ds-missing')).toBeNull();
    expect(datasetNewestArticle(store, null)).toBeNull();

    const lineage = lineageOf(store, { adapterId: 'a-1', baseModel: 'tiny', datasetId: 'ds-a' });
    expect(lineage).toEqual({ adapterId: 'a-1', baseModel: 'tiny', datasetId: 'ds-a', newestArticle: '2026-11-30' });
    expect(lineageLine('Iain', lineage)).toBe('Columnist: Iain · adapter: a-1 · base model: tiny · dataset: ds-a (newest article 2026-11-30)');
    expect(lineageLine('Iain', lineageOf(store, { datasetId: 'ds-undated' }))).toBe('Columnist: Iain · adapter: none (base model) · base model: unknown · dataset: ds-undated');
  });
});
