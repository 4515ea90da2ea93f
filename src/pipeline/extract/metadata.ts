import type { CheerioAPI } from 'cheerio';
import { squash } from './dom.ts';

/**
 * Article metadata from the places publishers put it, most reliable first: schema.org JSON-LD
 * (Article and its subtypes, also inside @graph), then OpenGraph / article:* properties, then the
 * assorted meta names CMSs emit (parsely, sailthru, Dublin Core, citation_*), then visible markup.
 */

export interface Metadata {
  title: string | null;
  author: string | string[] | null;
  published: string | null;
  /** schema.org articleBody when the page ships one (used as a fallback body). */
  ldBody: string | null;
}

const ARTICLE_TYPES = new Set([
  'article', 'newsarticle', 'blogposting', 'reportagenewsarticle', 'analysisnewsarticle',
  'opinionnewsarticle', 'reviewnewsarticle', 'backgroundnewsarticle', 'askpublicnewsarticle',
  'techarticle', 'scholarlyarticle', 'report', 'liveblogposting', 'socialmediaposting',
  'satiricalarticle', 'medicalscholarlyarticle', 'advertisercontentarticle', 'posting',
]);

type Json = unknown;
type JsonObject = Record<string, Json>;

const isObject = (x: Json): x is JsonObject => typeof x === 'object' && x !== null && !Array.isArray(x);

function typesOf(obj: JsonObject): string[] {
  const t = obj['@type'];
  const list = Array.isArray(t) ? t : [t];
  return list.filter((x): x is string => typeof x === 'string').map((x) => x.toLowerCase().replace(/^.*[/:]/, ''));
}

/** JSON.parse, then a second try after removing what CMSs commonly break JSON-LD with. */
function parseLenient(text: string): Json {
  try {
    return JSON.parse(text);
  } catch {
    const repaired = text
      .replace(/^\s*(?:<!--|\/\/\s*<!\[CDATA\[|<!\[CDATA\[)/, '')
      .replace(/(?:-->|\/\/\s*\]\]>|\]\]>)\s*$/, '')
      // raw control characters inside strings (newlines pasted into articleBody) are invalid JSON
      .replace(/[\u0000-\u001f]+/g, ' ')
      .replace(/,\s*([}\]])/g, '$1');
    try {
      return JSON.parse(repaired);
    } catch {
      return null; // a broken block is skipped; the other sources still apply
    }
  }
}

/** Every object in a JSON-LD value, flattening arrays, @graph and mainEntity. */
function collectObjects(value: Json, out: JsonObject[], depth = 0): void {
  if (depth > 6) return;
  if (Array.isArray(value)) {
    for (const v of value) collectObjects(v, out, depth + 1);
  } else if (isObject(value)) {
    out.push(value);
    if (value['@graph']) collectObjects(value['@graph'], out, depth + 1);
    if (isObject(value.mainEntity) || Array.isArray(value.mainEntity)) collectObjects(value.mainEntity, out, depth + 1);
  }
}

interface JsonLd {
  articles: JsonObject[];
  /** Objects by "@id", for references such as "author": {"@id": "#/schema/person/1"}. */
  byId: Map<string, JsonObject>;
}

function readJsonLd($: CheerioAPI): JsonLd {
  const all: JsonObject[] = [];
  $('script[type="application/ld+json"]').each((_, el) => {
    collectObjects(parseLenient($(el).text()), all);
  });
  const byId = new Map<string, JsonObject>();
  for (const o of all) if (typeof o['@id'] === 'string' && Object.keys(o).length > 1) byId.set(o['@id'], o);
  return { articles: all.filter((o) => typesOf(o).some((t) => ARTICLE_TYPES.has(t))), byId };
}

const asString = (x: Json): string | null => (typeof x === 'string' && squash(x) ? squash(x) : null);

function personNames(value: Json, byId: Map<string, JsonObject>): string[] {
  const list = Array.isArray(value) ? value : [value];
  const names: string[] = [];
  for (const item of list) {
    const v = isObject(item) && typeof item['@id'] === 'string' && item.name === undefined ? byId.get(item['@id']) ?? item : item;
    if (typeof v === 'string') names.push(v);
    else if (isObject(v)) {
      const name = asString(v.name) ?? [asString(v.givenName), asString(v.familyName)].filter(Boolean).join(' ');
      if (name) names.push(name);
    }
  }
  return names;
}

/** "By Jane Doe and John Roe" style bylines, URLs and empty entries cleaned out. */
export function normaliseAuthors(raw: string[]): string | string[] | null {
  const names: string[] = [];
  for (const r of raw) {
    const s = squash(r).replace(/^by\s+/i, '').trim();
    if (!s || /^https?:\/\//i.test(s) || s.length > 120) continue;
    if (!names.includes(s)) names.push(s);
  }
  if (names.length === 0) return null;
  return names.length === 1 ? names[0]! : names;
}

const ISO_LIKE = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?\s*(Z|[+-]\d{2}:?\d{2})?)?$/i;

/**
 * A date string (or epoch number) as ISO 8601, or null when it is not a real date. An ISO-like
 * input keeps its own calendar day and offset (so "2019-11-19T23:30-05:00" stays on the 19th);
 * anything else goes through Date and comes out in UTC.
 */
export function normaliseDate(value: unknown): string | null {
  if (value == null) return null;
  if (typeof value === 'number') return fromEpoch(value);
  if (typeof value !== 'string') return null;
  const s = value.trim();
  if (!s) return null;
  if (/^\d{10}(\d{3})?$/.test(s)) return fromEpoch(Number(s));
  const m = ISO_LIKE.exec(s);
  if (m) {
    const [, y, mo, d, h, mi, sec, frac, zone] = m;
    const check = new Date(Date.UTC(Number(y), Number(mo) - 1, Number(d)));
    if (check.getUTCMonth() !== Number(mo) - 1 || check.getUTCDate() !== Number(d) || !plausibleYear(Number(y))) return null;
    if (h === undefined) return `${y}-${mo}-${d}`;
    if (Number(h) > 23 || Number(mi) > 59 || Number(sec ?? 0) > 59) return null;
    const z = !zone ? '' : zone.toUpperCase() === 'Z' ? 'Z' : `${zone.slice(0, 3)}:${zone.slice(-2)}`;
    return `${y}-${mo}-${d}T${h}:${mi}:${sec ?? '00'}${frac ?? ''}${z}`;
  }
  const t = Date.parse(s);
  if (Number.isNaN(t)) return null;
  const d = new Date(t);
  return plausibleYear(d.getUTCFullYear()) ? d.toISOString() : null;
}

function fromEpoch(n: number): string | null {
  const ms = n < 1e11 ? n * 1000 : n;
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) || !plausibleYear(d.getUTCFullYear()) ? null : d.toISOString();
}

const plausibleYear = (y: number): boolean => y >= 1900 && y <= 2200;

/** Every <meta> content by lower-cased property / name / itemprop (first occurrence wins), in one query. */
function metaIndex($: CheerioAPI): Map<string, string> {
  const index = new Map<string, string>();
  $('meta[content]').each((_, el) => {
    const content = squash(el.attribs.content ?? '');
    if (!content) return;
    for (const key of [el.attribs.property, el.attribs.name, el.attribs.itemprop]) {
      const k = key?.trim().toLowerCase();
      if (k && !index.has(k)) index.set(k, content);
    }
  });
  return index;
}

const firstMeta = (index: Map<string, string>, keys: string[]): string | null => {
  for (const k of keys) {
    const v = index.get(k);
    if (v) return v;
  }
  return null;
};

const TITLE_SEPARATORS = /\s+[|–—·•:-]\s+[^|–—·•]{2,40}$/;

export function extractMetadata($: CheerioAPI): Metadata {
  const { articles: ld, byId } = readJsonLd($);
  const meta = metaIndex($);
  const first = <T>(f: (o: JsonObject) => T | null): T | null => {
    for (const o of ld) {
      const v = f(o);
      if (v != null) return v;
    }
    return null;
  };

  const h1 = squash($('h1').first().text());
  const docTitle = squash($('title').first().text());
  const title =
    first((o) => asString(o.headline) ?? asString(o.name)) ??
    firstMeta(meta, ['og:title', 'twitter:title', 'dc.title', 'sailthru.title', 'parsely-title']) ??
    (h1 || null) ??
    (docTitle.replace(TITLE_SEPARATORS, '') || null);

  // Each source in order of reliability; the first that yields a real name (not a profile URL) wins.
  const authorSources: (() => string[])[] = [
    () => first((o) => {
      const names = personNames(o.author ?? o.creator, byId);
      return names.length ? names : null;
    }) ?? [],
    ...['author', 'article:author', 'parsely-author', 'sailthru.author', 'dc.creator', 'byl', 'citation_author']
      .map((k) => () => (meta.has(k) ? [meta.get(k)!] : [])),
    () => [squash($('[itemprop="author"] [itemprop="name"]').first().text())],
    () => [squash($('[rel="author"]').first().text())],
  ];
  let author: string | string[] | null = null;
  for (const source of authorSources) {
    author = normaliseAuthors(source());
    if (author) break;
  }

  const dateSources: (() => unknown)[] = [
    () => first((o) => (o.datePublished ?? o.dateCreated ?? null) as Json),
    () => firstMeta(meta, ['article:published_time', 'og:article:published_time', 'datepublished', 'parsely-pub-date', 'sailthru.date', 'pubdate', 'publishdate', 'publish-date', 'date', 'dc.date', 'dcterms.created', 'dc.date.issued', 'citation_publication_date', 'article.published']),
    ...['time[datetime][itemprop="datePublished"]', 'time[pubdate][datetime]', 'article time[datetime]', 'time[datetime]']
      .map((css) => () => $(css).first().attr('datetime')),
  ];
  let published: string | null = null;
  for (const source of dateSources) {
    published = normaliseDate(source());
    if (published) break;
  }

  const ldBody = first((o) => (typeof o.articleBody === 'string' && o.articleBody.trim() ? o.articleBody.trim() : null));
  return { title, author, published, ldBody };
}
