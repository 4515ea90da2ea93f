import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { contentHash, dedupeArticles, jaccard, minhash, shingles } from '../../src/pipeline/dataset/dedupe.ts';
import type { ArticleInput } from '../../src/pipeline/dataset/clean-text.ts';
import { readArticleFolder, SAMPLE_ARCHIVE_DIR } from '../../src/pipeline/crawl/sample-site.ts';

const WORDS = 'operators vendors spectrum capex doom consultants keynote revenue towers fibre slicing hype regulators margins layoffs cloud satellites edge fridge lemmings empire'.split(' ');

/** Deterministic pseudo-random prose (a different stream per seed). */
function text(seed: number, words = 400): string {
  let h = seed * 2654435761;
  const out: string[] = [];
  for (let i = 0; i < words; i++) {
    h = (Math.imul(h ^ (h >>> 15), 0x2c1b3c6d) + 0x297a2d39) >>> 0;
    out.push(WORDS[(h >>> 11) % WORDS.length]);
  }
  return out.join(' ');
}

const art = (id: number, body: string, published: string | null = `2024-01-${String(id).padStart(2, '0')}`): ArticleInput => ({
  id,
  url: `https://example.org/${id}`,
  title: `T${id}`,
  author: null,
  published,
  body,
});

describe('dedupeArticles', () => {
  it('finds exact duplicates regardless of case and whitespace, keeping the earliest', () => {
    const a = text(1);
    const r = dedupeArticles([art(2, a.toUpperCase().replace(/ /g, '  \n')), art(1, a), art(3, text(3))], { nearDupThreshold: 0.85 });
    expect(r.duplicates).toEqual([{ id: 2, url: 'https://example.org/2', duplicateOf: 1, kind: 'exact', similarity: 1 }]);
    expect(r.articles.map((x) => x.id)).toEqual([1, 3]);
    expect(r.counts).toEqual({ input: 3, kept: 2, exact: 1, near: 0 });
  });

  it('finds near-duplicates above the threshold and not below it', () => {
    const base = text(10, 600).split(' ');
    const lightEdit = [...base];
    for (let i = 0; i < 600; i += 100) lightEdit[i] = 'CHANGED'; // 6 words of 600
    const heavyEdit = [...base.slice(0, 300), ...text(99, 300).split(' ')]; // half rewritten
    const input = [art(1, base.join(' ')), art(2, lightEdit.join(' ')), art(3, heavyEdit.join(' '))];
    const r = dedupeArticles(input, { nearDupThreshold: 0.85 });
    expect(r.duplicates.map((d) => [d.id, d.duplicateOf, d.kind])).toEqual([[2, 1, 'near']]);
    expect(r.duplicates[0].similarity).toBeGreaterThan(0.9);
    expect(r.duplicates[0].similarity).toBeLessThan(1);
    // A lower threshold catches the half-rewritten one too.
    const loose = dedupeArticles(input, { nearDupThreshold: 0.3 });
    expect(loose.counts.near).toBe(2);
  });

  it('keeps unrelated articles apart and is order-independent in what it keeps', () => {
    const input = Array.from({ length: 40 }, (_, i) => art(i + 1, text(i + 1)));
    expect(dedupeArticles(input, { nearDupThreshold: 0.85 }).counts.kept).toBe(40);
    const withCopy = [...input, art(41, input[5].body, '2023-01-01')];
    const r1 = dedupeArticles(withCopy, { nearDupThreshold: 0.85 });
    const r2 = dedupeArticles([...withCopy].reverse(), { nearDupThreshold: 0.85 });
    // The copy is published earlier, so it is the one kept.
    expect(r1.duplicates).toEqual([expect.objectContaining({ id: 6, duplicateOf: 41 })]);
    expect(r2.duplicates).toEqual(r1.duplicates);
  });

  it('MinHash agreement tracks the true Jaccard similarity', () => {
    const a = shingles(text(5, 800));
    const bWords = text(5, 800).split(' ');
    for (let i = 0; i < 800; i += 25) bWords[i] = 'EDIT';
    const b = shingles(bWords.join(' '));
    const sa = minhash(a);
    const sb = minhash(b);
    const agree = sa.filter((x, i) => x === sb[i]).length / sa.length;
    expect(Math.abs(agree - jaccard(a, b))).toBeLessThan(0.15);
  });

  it('catches the bundled sample archive duplicate and near-duplicate', () => {
    if (!fs.existsSync(SAMPLE_ARCHIVE_DIR)) return;
    const files = readArticleFolder(SAMPLE_ARCHIVE_DIR).map((a, i) => art(i + 1, a.body, a.published));
    const slugs = readArticleFolder(SAMPLE_ARCHIVE_DIR).map((a) => a.slug);
    const r = dedupeArticles(files, { nearDupThreshold: 0.85 });
    const dupSlugs = r.duplicates.map((d) => [slugs[d.id - 1], d.kind]);
    const dupFiles = fs.readdirSync(SAMPLE_ARCHIVE_DIR).filter((f) => /-(near-)?dup\.md$/.test(f));
    expect(dupSlugs).toHaveLength(dupFiles.length);
    for (const f of dupFiles) {
      const slug = path.basename(f, '.md');
      expect(dupSlugs).toContainEqual([slug, slug.endsWith('near-dup') ? 'near' : 'exact']);
    }
  });

  it('hashes content with case and whitespace folded', () => {
    expect(contentHash('A  b\nC')).toBe(contentHash('a b c'));
    expect(contentHash('a b c')).not.toBe(contentHash('a b d'));
  });
});
