/**
 * Source profiles: how to find one columnist's articles on one site, as data
 * (data/columnists/<columnist>/sources/<name>.json, documented in data/columnists/SOURCES.md). `{{baseUrl}}` anywhere in a
 * profile is replaced by the base URL given at run time, so one profile serves a site whose address
 * is only known then (the bundled sample archive runs on a random local port).
 */
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { MorrisError } from '../../errors.ts';
import { SOURCES_DIR } from '../../paths.ts';

export { SOURCES_DIR };

const regex = z.string().refine((s) => {
  try {
    new RegExp(s);
    return true;
  } catch {
    return false;
  }
}, 'expected a valid regular expression');

const listingSchema = z
  .object({
    /** First listing page. */
    url: z.string().min(1),
    /** CSS selector for article links on a listing page; default: every `a[href]`, filtered by keep/drop. */
    links: z.string().optional(),
    /** How to reach the next page: a link selector, or a URL template with `{page}`, or both (selector first). */
    next: z
      .object({
        selector: z.string().optional(),
        template: z.string().includes('{page}').optional(),
        /** Page number the template starts at for the second page. */
        start: z.number().int().min(0).default(2),
      })
      .strict()
      .optional(),
    maxPages: z.number().int().min(1).optional(),
  })
  .strict();

export const profileSchema = z
  .object({
    name: z.string().regex(/^[a-z0-9][a-z0-9-]*$/, 'lowercase letters, digits and dashes'),
    description: z.string().default(''),
    /** Default for `{{baseUrl}}` when none is given at run time. */
    baseUrl: z.string().optional(),
    listings: z.array(listingSchema).default([]),
    /** RSS 2.0 or Atom feeds. */
    feeds: z.array(z.string()).default([]),
    /** Sitemaps or sitemap indexes. */
    sitemaps: z.array(z.string()).default([]),
    /** Also read the sitemaps robots.txt advertises. */
    robotsSitemaps: z.boolean().default(false),
    /** Keep-patterns, tested against the URL's path + query; a URL must match at least one. */
    keep: z.array(regex).default(['.']),
    /** Drop-patterns, tested after keep; any match drops the URL. */
    drop: z.array(regex).default([]),
    /**
     * The hosts (host:port) this source may fetch from: discovered links and redirects elsewhere
     * are refused and counted as off-host. Default: the base URL's host plus the hosts of the
     * listings, feeds and sitemaps.
     */
    hosts: z.array(z.string().regex(/^[^/\s]+$/, 'a host or host:port (www.example.org, 127.0.0.1:8080), not a URL')).optional(),
    /** Feed items whose author (dc:creator / author) does not contain this are not fetched. */
    feedAuthor: z.string().optional(),
    /** Extracted articles whose author does not contain this are skipped ("other author"). */
    author: z.string().optional(),
    /** Query parameters removed from URLs besides the usual tracking ones (utm_*, fbclid …). */
    stripParams: z.array(z.string()).default([]),
    /** CSS selectors handed to the extractor; any left out fall back to the generic extractor. */
    selectors: z
      .object({ title: z.string(), body: z.string(), author: z.string(), published: z.string() })
      .partial()
      .strict()
      .optional(),
    /** Bodies shorter than this are not articles. */
    minBodyChars: z.number().int().min(0).default(400),
    /** Listing pages walked per listing when neither the profile nor the command line says. */
    maxPages: z.number().int().min(1).default(50),
    /** Per-run caps; any left out come from config (MORRIS_CRAWL_MAX_*). */
    limits: z
      .object({
        /** New URLs discovery may add to the frontier. */
        urls: z.number().int().min(1),
        /** Pages fetched (listing pages, feeds, sitemaps, articles). */
        fetches: z.number().int().min(1),
        /** Bytes of response bodies downloaded. */
        bytes: z.number().int().min(1),
        /** Wall time of the run. */
        seconds: z.number().min(0.001),
      })
      .partial()
      .strict()
      .optional(),
  })
  .strict()
  .refine((p) => p.listings.length + p.feeds.length + p.sitemaps.length > 0 || p.robotsSitemaps, {
    message: 'a profile needs at least one listing, feed or sitemap',
  });

export type SourceProfile = z.output<typeof profileSchema>;

/** Names of the profiles in a folder (file names without .json). */
export function listProfiles(dir: string = SOURCES_DIR): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .map((f) => f.slice(0, -5))
    .sort();
}

/** Reads, validates and resolves `{{baseUrl}}` in one profile. */
export function loadProfile(name: string, opts: { dir?: string; baseUrl?: string } = {}): SourceProfile {
  const dir = opts.dir ?? SOURCES_DIR;
  const file = path.join(dir, `${name}.json`);
  if (!/^[a-z0-9][a-z0-9-]*$/.test(name) || !fs.existsSync(file)) {
    throw new MorrisError('NOT_FOUND', `No source profile named "${name}" in ${dir}.`, {
      hint: `Known profiles: ${listProfiles(dir).join(', ') || '(none)'}.`,
    });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new MorrisError('BAD_INPUT', `${file} is not valid JSON: ${(e as Error).message}`, { cause: e });
  }
  return parseProfile(raw, { baseUrl: opts.baseUrl, origin: file });
}

/** Validates a profile object and substitutes `{{baseUrl}}`. */
export function parseProfile(raw: unknown, opts: { baseUrl?: string; origin?: string } = {}): SourceProfile {
  const r = profileSchema.safeParse(raw);
  if (!r.success) {
    const lines = r.error.issues.map((i) => `  ${i.path.join('.') || '(profile)'}: ${i.message}`).join('\n');
    throw new MorrisError('BAD_INPUT', `Invalid source profile${opts.origin ? ` ${opts.origin}` : ''}:\n${lines}`, {
      hint: 'See data/columnists/SOURCES.md for the format.',
    });
  }
  const base = (opts.baseUrl ?? r.data.baseUrl)?.replace(/\/+$/, '');
  const json = JSON.stringify(r.data);
  if (json.includes('{{baseUrl}}') && !base) {
    throw new MorrisError('BAD_INPUT', `Source profile "${r.data.name}" needs a base URL.`, {
      hint: 'Pass --base-url URL (e.g. the address `morris demo` or the sample site prints).',
    });
  }
  if (base && !/^https?:\/\//.test(base)) throw new MorrisError('BAD_INPUT', `Base URL must be http(s): ${base}`);
  // Substitute inside the parsed structure so characters in the URL need no JSON escaping.
  const sub = (v: unknown): unknown =>
    typeof v === 'string'
      ? v.replaceAll('{{baseUrl}}', base ?? '')
      : Array.isArray(v)
        ? v.map(sub)
        : v && typeof v === 'object'
          ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, sub(x)]))
          : v;
  // The base URL actually used (given at run time or the profile's own) is what `allowedHosts`
  // and the private-address rule are judged against.
  return { ...(sub(r.data) as SourceProfile), ...(base ? { baseUrl: base } : {}) };
}

/** Hosts (host:port) a source may fetch from: its `hosts`, or its own URLs' hosts. */
export function allowedHosts(p: SourceProfile): string[] {
  if (p.hosts) return p.hosts.map((h) => h.toLowerCase());
  const own = [...(p.baseUrl ? [p.baseUrl] : []), ...p.listings.map((l) => l.url), ...p.feeds, ...p.sitemaps];
  return [...new Set(own.map(hostOf).filter((h): h is string => h !== null))];
}

/** The URL the private-address rule treats as the source's own: its base URL, else its first entry URL. */
export function ownUrl(p: SourceProfile): string | null {
  return p.baseUrl ?? p.listings[0]?.url ?? p.feeds[0] ?? p.sitemaps[0] ?? null;
}

function hostOf(u: string): string | null {
  try {
    return new URL(u).host;
  } catch {
    return null;
  }
}
