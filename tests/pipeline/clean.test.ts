import { describe, expect, it } from 'vitest';
import { cleanArticles, countWords, normaliseText, stripBoilerplate, type ArticleInput } from '../../src/pipeline/dataset/clean-text.ts';

const para = (n: number, seed = 'x') =>
  Array.from({ length: n }, (_, i) => `Sentence ${i} of ${seed} explains, at some length, why the operator's strategy is heading for the rocks.`).join(' ');

const article = (id: number, body: string, title: string | null = `Title ${id}`): ArticleInput => ({
  id,
  url: `https://example.org/a/${id}`,
  title,
  author: 'Iain Morris',
  published: '2024-01-01',
  body,
});

describe('normaliseText', () => {
  it('normalises whitespace, quotes, dashes and ellipses', () => {
    const input = '  \u201CSmart\u201D quotes\u00A0and \u2018single\u2019 ones\u2026\r\n\r\n\r\n\r\nNext -- para\u200B here \t with  gaps.  ';
    expect(normaliseText(input)).toBe('"Smart" quotes and \'single\' ones...\n\nNext — para here with gaps.');
  });

  it('composes decomposed accents (NFC)', () => {
    expect(normaliseText('cafe\u0301')).toBe('café');
  });
});

describe('stripBoilerplate', () => {
  it('removes furniture lines and counts them by kind, leaving prose alone', () => {
    const stripped: Record<string, number> = {};
    const text = [
      'By Iain Morris, International Editor',
      'The operators are doomed. By contrast, the vendors are merely in trouble.',
      'Subscribe to our daily newsletter for the latest telecom news.',
      'Sign up',
      'Related: Vodafone cuts another 1,000 jobs',
      'Read more: Why Open RAN is still waiting',
      '(Source: Vodafone)',
      'Photo credit: Getty Images',
      'Share this article',
      'Advertisement',
      'What could possibly go wrong?',
    ].join('\n\n');
    const out = stripBoilerplate(text, stripped);
    expect(out).toBe('The operators are doomed. By contrast, the vendors are merely in trouble.\n\nWhat could possibly go wrong?');
    expect(stripped).toEqual({ byline: 1, subscribe: 2, related: 2, 'image credit': 2, share: 1, advert: 1 });
  });

  it('keeps long paragraphs even when they start like furniture', () => {
    const long = `Related: ${para(4)}`;
    expect(stripBoilerplate(long)).toBe(long);
  });
});

describe('cleanArticles', () => {
  it('drops empty, too-short, untitled and index-like pages with counted reasons', () => {
    const index = Array.from({ length: 12 }, (_, i) => `Headline number ${i}`).join('\n\n');
    const res = cleanArticles(
      [
        article(1, `${para(8, 'one')}\n\n${para(8, 'two')}`),
        article(2, ''),
        article(3, 'Too short to be a column.'),
        article(4, para(20), null),
        article(5, index + '\n\n' + para(10)),
        article(6, 'Subscribe to our newsletter today\n\nSign up'),
      ],
      { minWords: 150 },
    );
    expect(res.articles.map((a) => a.id)).toEqual([1]);
    expect(res.counts.dropped).toEqual({
      'empty body': 2,
      'too short (< 150 words)': 1,
      'no title': 1,
      'not an article (list of links or headlines)': 1,
    });
    expect(res.dropped.find((d) => d.id === 6)?.reason).toBe('empty body');
    expect(res.counts).toMatchObject({ input: 6, kept: 1 });
  });

  it('removes a headline repeated as the first line and is pure', () => {
    const input = [article(1, `Title 1\n\n${para(30)}`)];
    const copy = structuredClone(input);
    const res = cleanArticles(input, { minWords: 10 });
    expect(res.articles[0].body.startsWith('Sentence 0')).toBe(true);
    expect(input).toEqual(copy);
  });

  it('counts words across punctuation and apostrophes', () => {
    expect(countWords("The operator's 5G plan — doomed, obviously.")).toBe(6);
  });
});
