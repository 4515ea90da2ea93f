import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { extractArticle } from '../../src/pipeline/extract/article.ts';
import { normaliseDate } from '../../src/pipeline/extract/metadata.ts';

const PAGE_URL = 'https://news.example.com/2024/05/06/story';

/** Four paragraphs of prose so the page reads as an article to the body scorer. */
const PROSE = [
  'The operator announced on Monday that its long-delayed network upgrade would slip again, this time into the second half of next year, blaming suppliers, regulators and, for good measure, the weather.',
  'Analysts were unimpressed. One noted that the company had now missed four consecutive deadlines, a record that would embarrass most utilities, and that its capital spending had fallen for the third year running.',
  'Executives insisted the delay was a sign of prudence rather than trouble. The new equipment, they said, would be tested more thoroughly than before, and customers would barely notice the difference.',
  'Customers, for their part, have been noticing the difference for years, in the form of dropped calls, slow downloads and bills that somehow keep rising while the service stays exactly where it was.',
];

function page({ head = '', article = PROSE.map((p) => `<p>${p}</p>`).join('\n'), extra = '' } = {}): string {
  return `<!doctype html><html><head><title>Upgrade delayed again | Example News</title>${head}</head><body>
  <header class="site-header"><nav><a href="/">Home</a> <a href="/tech">Tech</a> <a href="/biz">Business</a></nav></header>
  <main><article class="story">
    <h1>Upgrade delayed again</h1>
    <div class="story-body">${article}</div>
  </article>${extra}</main>
  <footer class="site-footer"><p>Copyright Example News. All the small print, terms of use and privacy policy, links to careers and the newsroom contacts.</p></footer>
  </body></html>`;
}

describe('extractArticle: metadata', () => {
  it('reads title, authors and date from JSON-LD, including inside @graph', () => {
    const ld = {
      '@context': 'https://schema.org',
      '@graph': [
        { '@type': 'WebSite', name: 'Example News' },
        {
          '@type': 'NewsArticle',
          headline: 'Upgrade delayed, again',
          author: [{ '@type': 'Person', name: 'Jane Doe' }, { '@type': 'Person', name: 'John Roe' }],
          datePublished: '2024-05-06T09:30:00+01:00',
        },
      ],
    };
    const a = extractArticle(page({ head: `<script type="application/ld+json">${JSON.stringify(ld)}</script>` }), PAGE_URL);
    expect(a.title).toBe('Upgrade delayed, again');
    expect(a.author).toEqual(['Jane Doe', 'John Roe']);
    expect(a.published).toBe('2024-05-06T09:30:00+01:00');
  });

  it('resolves a JSON-LD author given as an @id reference into the graph', () => {
    const ld = {
      '@context': 'https://schema.org',
      '@graph': [
        { '@type': 'BlogPosting', headline: 'By reference', author: { '@id': 'https://example.com/#/person/1' }, datePublished: '2014-09-15T20:22:02+00:00' },
        { '@type': 'Person', '@id': 'https://example.com/#/person/1', name: 'Regan Shae' },
      ],
    };
    const a = extractArticle(page({ head: `<script type="application/ld+json">${JSON.stringify(ld)}</script>` }), PAGE_URL);
    expect(a.author).toBe('Regan Shae');
    expect(a.published).toBe('2014-09-15T20:22:02+00:00');
  });

  it('falls back to OpenGraph and meta tags when there is no JSON-LD', () => {
    const head = `<meta property="og:title" content="OG headline">
      <meta name="author" content="By Iain Morris">
      <meta property="article:published_time" content="2023-11-19T23:05:00Z">`;
    const a = extractArticle(page({ head }), PAGE_URL);
    expect(a.title).toBe('OG headline');
    expect(a.author).toBe('Iain Morris');
    expect(a.published).toBe('2023-11-19T23:05:00Z');
  });

  it('skips an author that is only a profile PAGE_URL and prefers the datePublished <time>', () => {
    const head = '<meta property="article:author" content="https://www.facebook.com/someone">';
    const extra = `<p class="byline">By <a rel="author" href="/people/iain">Iain Morris</a></p>
      <time datetime="2020-01-01">modified</time><time itemprop="datePublished" datetime="2019-12-31T23:59:00+00:00">published</time>`;
    const a = extractArticle(page({ head, extra }), PAGE_URL);
    expect(a.author).toBe('Iain Morris');
    expect(a.published).toBe('2019-12-31T23:59:00+00:00');
  });

  it('uses the visible h1 and a <time datetime> when there are no meta tags', () => {
    const a = extractArticle(page({ extra: '<time datetime="2022-02-03">3 Feb</time>' }), PAGE_URL);
    expect(a.title).toBe('Upgrade delayed again');
    expect(a.published).toBe('2022-02-03');
    expect(a.author).toBeNull();
  });

  it('skips a broken JSON-LD block and still reads the next one', () => {
    const good = JSON.stringify({ '@type': 'BlogPosting', headline: 'From the good block', datePublished: '2021-01-02' });
    const head = `<script type="application/ld+json">{"@type": "NewsArticle", "headline": </script>
      <script type="application/ld+json">${good}</script>`;
    const a = extractArticle(page({ head }), PAGE_URL);
    expect(a.title).toBe('From the good block');
    expect(a.published).toBe('2021-01-02');
  });

  it('turns an invalid date into null instead of throwing', () => {
    const head = '<meta property="article:published_time" content="2024-02-30T10:00:00Z">';
    expect(extractArticle(page({ head }), PAGE_URL).published).toBeNull();
    const head2 = '<meta property="article:published_time" content="yesterday-ish">';
    expect(extractArticle(page({ head: head2 }), PAGE_URL).published).toBeNull();
  });
});

describe('normaliseDate', () => {
  it('keeps the calendar day and offset of ISO-like input and converts the rest to UTC', () => {
    expect(normaliseDate('2019-11-19T23:30:00-0500')).toBe('2019-11-19T23:30:00-05:00');
    expect(normaliseDate('2019-11-19 08:00')).toBe('2019-11-19T08:00:00');
    expect(normaliseDate('Tue, 19 Nov 2019 10:00:00 GMT')).toBe('2019-11-19T10:00:00.000Z');
    expect(normaliseDate('1574157600')).toBe('2019-11-19T10:00:00.000Z');
  });

  it('returns null for impossible or absent dates', () => {
    for (const bad of ['2019-13-01', '2019-02-29', '0000-00-00', 'not a date', '', null, undefined, {}, '2019-11-19T25:00']) {
      expect(normaliseDate(bad)).toBeNull();
    }
  });
});

describe('extractArticle: body', () => {
  it('returns the article paragraphs separated by one blank line, without the headline', () => {
    const a = extractArticle(page(), PAGE_URL);
    expect(a.body).toBe(PROSE.join('\n\n'));
  });

  it('drops invisible characters and paragraphs made only of them, keeps <br> as a line break', () => {
    const article = `<p>${PROSE[0]}</p><p>\u200b</p><p>Der Not\u00adfall\u00addaten\u00adsatz liegt auf der Karte, sagt das Ministerium, und niemand weiß wo.</p>
      <p>${PROSE[1]}</p><p>Line one of an address,<br>line two of it, and a&nbsp;non-breaking space.</p><p>${PROSE[2]}</p>`;
    const paragraphs = extractArticle(page({ article }), PAGE_URL).body.split('\n\n');
    expect(paragraphs).toEqual([
      PROSE[0], 'Der Notfalldatensatz liegt auf der Karte, sagt das Ministerium, und niemand weiß wo.', PROSE[1],
      'Line one of an address,\nline two of it, and a non-breaking space.', PROSE[2],
    ]);
  });

  it('keeps headings, lists and quotes inside the article as their own paragraphs', () => {
    const article = `<p>${PROSE[0]}</p><h2>What went wrong</h2><ul><li>Suppliers were late with the radios</li><li>The regulator changed the rules</li></ul>
      <blockquote><p>We remain fully committed to the plan, whatever the plan turns out to be.</p></blockquote><p>${PROSE[1]}</p><p>${PROSE[2]}</p>`;
    const paragraphs = extractArticle(page({ article }), PAGE_URL).body.split('\n\n');
    expect(paragraphs).toEqual([
      PROSE[0], 'What went wrong', 'Suppliers were late with the radios', 'The regulator changed the rules',
      'We remain fully committed to the plan, whatever the plan turns out to be.', PROSE[1], PROSE[2],
    ]);
  });

  it('removes navigation, sharing, related links, newsletter prompts, comments, captions and footers', () => {
    const article = `<div class="share-bar"><a href="#">Share on Facebook</a> <a href="#">Share on X</a></div>
      <p>${PROSE[0]}</p>
      <figure><img src="a.jpg"><figcaption>The operator's headquarters (Image: Getty)</figcaption></figure>
      <p>${PROSE[1]}</p><div class="ad-slot">Advertisement</div><p>${PROSE[2]}</p>
      <div class="newsletter-signup"><p>Sign up for our daily newsletter and never miss a delayed upgrade again.</p></div>
      <p>${PROSE[3]}</p>
      <div class="related-articles"><h3>Related stories</h3><ul><li><a href="/a">Rival also delays its upgrade</a></li><li><a href="/b">Regulator opens inquiry into the delays</a></li></ul></div>`;
    const extra = `<aside class="sidebar"><h3>Most read</h3><p>Something else entirely that people clicked on a great deal this week, apparently.</p></aside>
      <section id="comments"><p>First! This company is hopeless, I have been waiting for the upgrade since the last decade began.</p></section>`;
    const body = extractArticle(page({ article, extra }), PAGE_URL).body;
    expect(body).toBe(PROSE.join('\n\n'));
  });

  it('drops datelines, bylines, ad labels, teaser links and closing prompts inside the article', () => {
    const article = `<p>By JANE DOE and JOHN ROE</p><p>Updated 10:01 pm PST, Tuesday, November 19, 2019</p>
      <p>${PROSE[0]}</p><p>ADVERTISEMENT</p><p>Related: <a href="/x">Rival also delays its upgrade</a></p>
      <p><strong><a href="/y">OPERATOR SHARES FALL AFTER ANOTHER DELAY</a></strong></p>
      <p>${PROSE[1]}</p><p>${PROSE[2]}</p>
      <p>Reporting by Jane Doe; Editing by John Roe</p>
      <p>Follow us on Twitter and Facebook for more telecom news.</p>`;
    expect(extractArticle(page({ article }), PAGE_URL).body).toBe([PROSE[0], PROSE[1], PROSE[2]].join('\n\n'));
  });

  it('drops a "More stories" heading and the link list after it', () => {
    const article = `${PROSE.map((p) => `<p>${p}</p>`).join('')}<div class="heading">More Great Stories</div>
      <ul><li>The strange life of <a href="/a">a virtuoso coder</a></li><li>How to <a href="/b">opt out of data brokers</a></li></ul>`;
    expect(extractArticle(page({ article }), PAGE_URL).body).toBe(PROSE.join('\n\n'));
  });

  it('keeps embedded posts and data tables that are part of the article', () => {
    const article = `<p>${PROSE[0]}</p>
      <div class="social-media-embed"><blockquote class="twitter-tweet"><p>Yes this is real and yes the state spent half a million dollars on it: <a href="https://t.co/x">https://t.co/x</a></p>— Someone (@someone) <a href="https://twitter.com/s/1">November 18, 2019</a></blockquote></div>
      <p>${PROSE[1]}</p>
      <table><thead><tr><th>Year</th><th>Capex</th></tr></thead><tbody><tr><td>2022</td><td>4.1bn</td></tr><tr><td>2023</td><td>3.7bn</td></tr></tbody></table>
      <p>${PROSE[2]}</p>`;
    const body = extractArticle(page({ article }), PAGE_URL).body;
    expect(body).toContain('Yes this is real and yes the state spent half a million dollars on it');
    expect(body).toContain('2023');
    expect(body).toContain('3.7bn');
    expect(body.startsWith(PROSE[0]!)).toBe(true);
    expect(body.endsWith(PROSE[2]!)).toBe(true);
  });

  it('gathers an article split into look-alike chunks a few levels apart, in document order', () => {
    const chunk = (ps: string[]) => `<div class="article-body__chunk">${ps.map((p) => `<p>${p}</p>`).join('')}</div>`;
    const html = `<html><head><title>t</title></head><body><main>
      <section class="top"><div class="rail-wrap"><div class="grid">${chunk([PROSE[0]!, PROSE[1]!])}</div></div></section>
      <div class="ad-rail"><div class="inline-ad">Advertisement</div></div>
      <section class="rest"><div class="grid">${chunk([PROSE[2]!, PROSE[3]!, PROSE[0]!.replace('Monday', 'Tuesday')])}</div></section>
      </main></body></html>`;
    const paragraphs = extractArticle(html, PAGE_URL).body.split('\n\n');
    expect(paragraphs).toEqual([PROSE[0], PROSE[1], PROSE[2], PROSE[3], PROSE[0]!.replace('Monday', 'Tuesday')]);
  });

  it('does not run on into the next story rendered below in identical markup (infinite scroll)', () => {
    const story = (title: string, ps: string[]) => `<article class="story"><h1>${title}</h1><div class="story-body">${ps.map((p) => `<p>${p}</p>`).join('')}</div></article>`;
    const next = PROSE.slice(0, 3).map((p) => p.replace(/operator|company/g, 'regulator'));
    const html = `<html><head><title>t</title></head><body><main>${story('Upgrade delayed again', PROSE)}${story('Next story', next)}</main></body></html>`;
    expect(extractArticle(html, PAGE_URL).body).toBe(PROSE.join('\n\n'));
  });

  it('returns an empty body for a page with no article on it', () => {
    const html = `<html><head><title>Example News - Home</title></head><body>
      <nav><a href="/">Home</a><a href="/tech">Tech</a></nav>
      <div class="teasers"><ul>${Array.from({ length: 12 }, (_, i) => `<li><a href="/s${i}">Headline number ${i} about something that happened somewhere today</a></li>`).join('')}</ul></div>
      <form action="/search"><input name="q"><button>Search</button></form>
      <footer>Copyright Example News</footer></body></html>`;
    expect(extractArticle(html, PAGE_URL).body).toBe('');
  });

  it('returns an empty body for a listing page of teasers (headline link plus standfirst)', () => {
    const teasers = Array.from({ length: 8 }, (_, i) => `<article class="teaser"><h2><a href="/a${i}">Headline ${i} about operators and their woes</a></h2>
      <p>A short standfirst for story ${i}, which explains, briefly, why everything is terrible again and again.</p></article>`).join('');
    const html = `<html><head><title>Columns</title></head><body><main>${teasers}</main><a rel="next" href="?page=2">Next</a></body></html>`;
    expect(extractArticle(html, PAGE_URL).body).toBe('');
  });

  it('lets profile selectors override the generic extractor', () => {
    const html = page({
      extra: `<div class="meta"><span class="writer">Iain Morris</span><span class="when" data-x="1">2024-03-04T05:06:07Z</span></div>
        <div class="teaser-box"><p>Only this paragraph is the body the profile wants to keep, whatever the scorer thinks.</p></div>`,
    });
    const a = extractArticle(html, PAGE_URL, { title: '.story h1', body: '.teaser-box', author: '.writer', published: '.when' });
    expect(a).toEqual({
      title: 'Upgrade delayed again',
      author: 'Iain Morris',
      published: '2024-03-04T05:06:07Z',
      body: 'Only this paragraph is the body the profile wants to keep, whatever the scorer thinks.',
    });
  });

  it('falls back to the generic extractor when a selector matches nothing or is invalid CSS', () => {
    const a = extractArticle(page(), PAGE_URL, { body: '.no-such-thing', title: '!!not css((' });
    expect(a.body).toBe(PROSE.join('\n\n'));
    expect(a.title).toBe('Upgrade delayed again');
  });
});

describe('extractArticle: bad input never throws', () => {
  const cases: [string, string][] = [
    ['empty', ''],
    ['whitespace', '   \n\t '],
    ['plain text', 'just some words, no markup at all'],
    ['truncated mid-tag', page().slice(0, 1500) + '<p class="x'],
    ['unclosed everything', '<html><body><div><p>' + PROSE[0] + '<p>' + PROSE[1] + '<div><span><b><i>'],
    ['binary', String.fromCharCode(...Array.from({ length: 3000 }, (_, i) => (i * 7919) % 256))],
    ['PNG header', '\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\x01\0' + '\0'.repeat(200)],
    ['broken entities and attributes', '<p title="unterminated>&#xZZZZ; &bogus; &#99999999;</p><p =x y=>text'],
  ];
  for (const [name, html] of cases) {
    it(name, () => {
      const a = extractArticle(html, PAGE_URL);
      expect(typeof a.body).toBe('string');
      expect(a.published === null || typeof a.published === 'string').toBe(true);
    });
  }

  it('gives an empty body for binary content and non-string input', () => {
    expect(extractArticle(cases[5]![1], PAGE_URL).body).toBe('');
    expect(extractArticle(cases[6]![1], PAGE_URL).body).toBe('');
    expect(extractArticle(undefined as unknown as string, PAGE_URL).body).toBe('');
  });

  it('copes with pathological nesting depth, quickly and without losing the text', () => {
    const html = '<div>'.repeat(6000) + `<p>${PROSE[0]}</p><p>${PROSE[1]}</p>` + '</div>'.repeat(6000);
    const t0 = performance.now();
    const body = extractArticle(html, PAGE_URL).body;
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(body).toContain(PROSE[0]);
    expect(body).toContain(PROSE[1]);
  });

  it('still extracts the paragraphs a truncated page does contain', () => {
    const html = page();
    const cut = html.slice(0, html.indexOf(PROSE[3]!.slice(0, 30)));
    const body = extractArticle(cut, PAGE_URL).body;
    expect(body.startsWith(PROSE[0]!)).toBe(true);
    expect(body).toContain(PROSE[2]);
  });
});

// A sample of the shared benchmark's real pages, scored with its own metric module.
const BENCH = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../shared/extraction-bench');
const HAVE_BENCH = existsSync(path.join(BENCH, 'metric.mjs')) && existsSync(path.join(BENCH, 'data/zyte/ground-truth.json'));

describe.skipIf(!HAVE_BENCH)(`real pages from ${BENCH} (skipped when that folder is absent)`, () => {
  it('beats trafilatura\'s stored output on a fixed sample of 13 pages (F1 ≥ 0.96, no page below 0.9)', async () => {
    type Metric = { evaluateBodies(p: { trueBody: string; predBody: string }[], o: { nBootstrap: number }): { overall: { f1: number }; perPage: { f1: number }[] } };
    const metric = (await import(pathToFileURL(path.join(BENCH, 'metric.mjs')).href)) as Metric;
    const zyte = path.join(BENCH, 'data/zyte');
    const truth = JSON.parse(readFileSync(path.join(zyte, 'ground-truth.json'), 'utf8')) as Record<string, { articleBody: string; url: string }>;
    const ids = Object.keys(truth).sort().filter((_, i) => i % 15 === 0); // every 15th page: 13 pages, fixed
    const ours = metric.evaluateBodies(ids.map((id) => {
      const html = gunzipSync(readFileSync(path.join(zyte, 'html', `${id}.html.gz`))).toString('utf8');
      return { trueBody: truth[id]!.articleBody, predBody: extractArticle(html, truth[id]!.url).body };
    }), { nBootstrap: 0 });
    const stored = JSON.parse(readFileSync(path.join(zyte, 'reference-outputs/trafilatura.json'), 'utf8')) as { output: Record<string, { articleBody?: string }> };
    const trafilatura = metric.evaluateBodies(ids.map((id) => ({ trueBody: truth[id]!.articleBody, predBody: stored.output[id]?.articleBody ?? '' })), { nBootstrap: 0 });

    expect(ids.length).toBe(13);
    expect(ours.overall.f1).toBeGreaterThanOrEqual(0.96);
    expect(ours.overall.f1).toBeGreaterThan(trafilatura.overall.f1);
    expect(Math.min(...ours.perPage.map((p) => p.f1))).toBeGreaterThanOrEqual(0.9);
  });
});

if (!HAVE_BENCH) {
  console.warn(`extract.test: benchmark sample skipped, ${BENCH} not found (it sits next to the repository in the project workspace)`);
}
