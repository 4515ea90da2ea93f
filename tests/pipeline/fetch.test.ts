import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildUserAgent, Fetcher, parseRetryAfter, type FetcherOptions } from '../../src/pipeline/crawl/fetch.ts';
import { detectCharset, isBinary } from '../../src/pipeline/crawl/charset.ts';
import { MorrisError } from '../../src/errors.ts';
import { html, startFixture, withEtag, type Fixture } from './fixture-server.ts';

const UA = buildUserAgent('https://example.org/morris-contact', '9.9.9');
const opts = (o: Partial<FetcherOptions> = {}): FetcherOptions => ({
  userAgent: UA,
  rateLimitRps: 200,
  hostConcurrency: 4,
  timeoutMs: 2000,
  retries: 3,
  maxBytes: 1_000_000,
  backoffBaseMs: 20,
  ...o,
});

// "café – “quoted” €5" in windows-1252: é=E9, –=96, “=93, ”=94, €=80.
const CP1252 = Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x20, 0x96, 0x20, 0x93, 0x71, 0x75, 0x6f, 0x74, 0x65, 0x64, 0x94, 0x20, 0x80, 0x35]);
const CP1252_TEXT = 'café – “quoted” €5';

let f: Fixture;
let inFlight = 0;
let maxInFlight = 0;
/** How the last /huge response ended on the server: 'finished' (all 20 MB sent) or 'dropped'. */
let hugeEnd: Promise<'finished' | 'dropped'> = Promise.resolve('finished');

beforeAll(async () => {
  f = await startFixture({
    '/robots.txt': html('User-agent: *\nDisallow: /private/\n\nUser-agent: OtherBot\nDisallow: /\n', 'text/plain'),
    '/hello': html('<p>hello</p>'),
    '/private/secret': html('<p>secret</p>'),
    '/limited': (_req, res, n) => {
      if (n === 1) res.writeHead(429, { 'retry-after': '1', 'content-type': 'text/plain' }).end('slow down');
      else res.writeHead(200, { 'content-type': 'text/html' }).end('<p>ok after 429</p>');
    },
    '/limited-date': (_req, res, n) => {
      if (n === 1) res.writeHead(503, { 'retry-after': new Date(Date.now() + 1500).toUTCString() }).end();
      else res.writeHead(200, { 'content-type': 'text/html' }).end('<p>ok after 503</p>');
    },
    '/flaky': (_req, res, n) => {
      if (n === 1) res.writeHead(500, { 'content-type': 'text/plain' }).end('boom');
      else res.writeHead(200, { 'content-type': 'text/html' }).end('<p>ok after 500</p>');
    },
    '/broken': (_req, res) => void res.writeHead(502).end('bad gateway'),
    '/reset': (req) => void req.socket.destroy(),
    '/hang': () => undefined,
    '/old': (_req, res) => void res.writeHead(301, { location: '/newer' }).end(),
    '/newer': (_req, res) => void res.writeHead(302, { location: '/new' }).end(),
    '/new': html('<p>new home</p>'),
    '/to-private': (_req, res) => void res.writeHead(307, { location: '/private/secret' }).end(),
    '/cp1252-header': (_req, res) => void res.writeHead(200, { 'content-type': 'text/html; charset=windows-1252' }).end(CP1252),
    '/cp1252-meta': (_req, res) =>
      void res
        .writeHead(200, { 'content-type': 'text/html' })
        .end(Buffer.concat([Buffer.from('<html><head><meta http-equiv="Content-Type" content="text/html; charset=windows-1252"></head><body>'), CP1252])),
    '/bom': (_req, res) =>
      void res.writeHead(200, { 'content-type': 'text/html; charset=iso-8859-1' }).end(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('naïve ünïcode')])),
    '/huge': (_req, res) => {
      // 20 MB streamed in 64 KiB chunks; the fetcher must stop reading at its cap.
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-length': String(20 * 1024 * 1024) });
      const chunk = Buffer.alloc(64 * 1024, 'a');
      let sent = 0;
      const pump = () => {
        while (sent < 20 * 1024 * 1024) {
          sent += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end();
      };
      hugeEnd = new Promise((resolve) => res.on('close', () => resolve(res.writableFinished ? 'finished' : 'dropped')));
      res.on('close', () => (sent = Infinity));
      pump();
    },
    '/etag': withEtag(() => '<p>stable content</p>'),
    '/png': (_req, res) => void res.writeHead(200, { 'content-type': 'image/png' }).end(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 0, 0, 0])),
    '/nul-html': (_req, res) => void res.writeHead(200, { 'content-type': 'text/html' }).end(Buffer.from([0x3c, 0x70, 0x3e, 0, 1, 2, 0, 0xff])),
    '/count': async (_req, res) => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await new Promise((r) => setTimeout(r, 60));
      inFlight--;
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
    },
  });
});
afterAll(() => f.close());

describe('Fetcher', () => {
  it('sends an honest User-Agent with the contact URL, and fetches robots.txt once per host', async () => {
    const fx = new Fetcher(opts());
    const r = await fx.get(`${f.url}/hello`);
    await fx.get(`${f.url}/hello`);
    expect(r.status).toBe(200);
    expect(r.text).toBe('<p>hello</p>');
    const hello = f.log.find((l) => l.path === '/hello');
    expect(hello?.headers['user-agent']).toBe('MorrisBot/9.9.9 (+https://example.org/morris-contact)');
    expect(fx.counters.robotsFetches).toBe(1);
  });

  it('refuses URLs robots.txt disallows without requesting them', async () => {
    const fx = new Fetcher(opts());
    const before = f.hits('/private/secret');
    await expect(fx.get(`${f.url}/private/secret`)).rejects.toMatchObject({ code: 'ROBOTS_DISALLOWED' });
    expect(f.hits('/private/secret')).toBe(before);
    // A redirect into a disallowed path is refused too.
    await expect(fx.get(`${f.url}/to-private`)).rejects.toMatchObject({ code: 'ROBOTS_DISALLOWED' });
    expect(f.hits('/private/secret')).toBe(before);
  });

  it('treats a host whose robots.txt answers 5xx as off limits, saying why', async () => {
    const down = await startFixture({
      '/robots.txt': (_req, res) => void res.writeHead(503).end(),
      '/page': html('<p>page</p>'),
    });
    try {
      const err = await new Fetcher(opts()).get(`${down.url}/page`).catch((e) => e);
      expect(err.code).toBe('FETCH_FAILED');
      expect(err.message).toMatch(/robots\.txt unreachable \(HTTP 503\)/);
      expect(down.hits('/page')).toBe(0);
    } finally {
      await down.close();
    }
  });

  it('waits as long as Retry-After says on a 429, then succeeds', async () => {
    const fx = new Fetcher(opts());
    const t0 = Date.now();
    const r = await fx.get(`${f.url}/limited`);
    expect(r.status).toBe(200);
    expect(r.text).toContain('ok after 429');
    expect(r.attempts).toBe(2);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(950);
  });

  it('honours Retry-After given as an HTTP date', async () => {
    const fx = new Fetcher(opts());
    const t0 = Date.now();
    const r = await fx.get(`${f.url}/limited-date`);
    expect(r.status).toBe(200);
    // HTTP dates have one-second resolution, so the wait is 0.5–1.5 s.
    expect(Date.now() - t0).toBeGreaterThanOrEqual(400);
  });

  it('retries a 500 and returns the success', async () => {
    const fx = new Fetcher(opts());
    const r = await fx.get(`${f.url}/flaky`);
    expect(r.status).toBe(200);
    expect(r.attempts).toBe(2);
    expect(fx.counters.retries).toBe(1);
  });

  it('gives up on a server that keeps failing after 1 + retries attempts', async () => {
    const fx = new Fetcher(opts({ retries: 2 }));
    const before = f.hits('/broken');
    const r = await fx.get(`${f.url}/broken`);
    expect(r.status).toBe(502);
    expect(f.hits('/broken') - before).toBe(3);
  });

  it('retries network errors with backoff, then fails with a coded error', async () => {
    const fx = new Fetcher(opts({ retries: 2 }));
    const before = f.hits('/reset');
    const err = await fx.get(`${f.url}/reset`).catch((e) => e);
    expect(err).toBeInstanceOf(MorrisError);
    expect(err.code).toBe('FETCH_FAILED');
    expect(err.message).toMatch(/after 3 attempts/);
    expect(f.hits('/reset') - before).toBe(3);
  });

  it('times out a server that never answers', async () => {
    const fx = new Fetcher(opts({ timeoutMs: 200, retries: 1 }));
    const err = await fx.get(`${f.url}/hang`).catch((e) => e);
    expect(err.code).toBe('FETCH_FAILED');
    expect(err.message).toMatch(/timed out/);
  });

  it('follows redirects itself and records each hop', async () => {
    const fx = new Fetcher(opts());
    const r = await fx.get(`${f.url}/old`);
    expect(r.finalUrl).toBe(`${f.url}/new`);
    expect(r.text).toBe('<p>new home</p>');
    expect(r.redirects).toEqual([
      { from: `${f.url}/old`, to: `${f.url}/newer`, status: 301 },
      { from: `${f.url}/newer`, to: `${f.url}/new`, status: 302 },
    ]);
  });

  it('decodes windows-1252 from the header, from <meta http-equiv>, and prefers a BOM', async () => {
    const fx = new Fetcher(opts());
    const a = await fx.get(`${f.url}/cp1252-header`);
    expect(a.charset).toBe('windows-1252');
    expect(a.text).toBe(CP1252_TEXT);
    const b = await fx.get(`${f.url}/cp1252-meta`);
    expect(b.charset).toBe('windows-1252');
    expect(b.text).toContain(CP1252_TEXT);
    const c = await fx.get(`${f.url}/bom`);
    expect(c.charset).toBe('utf-8');
    expect(c.text).toBe('naïve ünïcode');
  });

  it('stops reading a 20 MB page at the size cap and marks it truncated', async () => {
    const fx = new Fetcher(opts({ maxBytes: 256 * 1024 }));
    const r = await fx.get(`${f.url}/huge`);
    expect(r.truncated).toBe(true);
    expect(r.bytes).toBe(256 * 1024);
    expect(r.text.length).toBe(256 * 1024);
    expect(fx.counters.bytes).toBe(256 * 1024);
    // The transfer was cancelled at the cap: the server never got to send the whole 20 MB.
    expect(await hugeEnd).toBe('dropped');
  });

  it('sends stored validators so an unchanged page costs a 304', async () => {
    const fx = new Fetcher(opts());
    const first = await fx.get(`${f.url}/etag`);
    expect(first.status).toBe(200);
    expect(first.etag).toBeTruthy();
    const second = await fx.get(`${f.url}/etag`, { validators: { etag: first.etag } });
    expect(second.status).toBe(304);
    expect(second.notModified).toBe(true);
    expect(second.text).toBe('');
    expect(fx.counters.notModified).toBe(1);
  });

  it('flags binary bodies instead of decoding them', async () => {
    const fx = new Fetcher(opts());
    const png = await fx.get(`${f.url}/png`);
    expect(png.binary).toBe(true);
    expect(png.text).toBe('');
    const nul = await fx.get(`${f.url}/nul-html`);
    expect(nul.binary).toBe(true);
  });

  it('spaces requests to one host by the rate limit and caps requests in flight', async () => {
    const fx = new Fetcher(opts({ rateLimitRps: 20, hostConcurrency: 2 }));
    await fx.get(`${f.url}/count`); // robots.txt + warm-up
    maxInFlight = 0;
    const t0 = Date.now();
    await Promise.all(Array.from({ length: 6 }, () => fx.get(`${f.url}/count`)));
    // 6 requests at 20/s: at least 5 gaps of 50 ms.
    expect(Date.now() - t0).toBeGreaterThanOrEqual(240);
    expect(maxInFlight).toBeLessThanOrEqual(2);
  });
});

describe('fetch helpers', () => {
  it('detects charsets in the HTML spec order', () => {
    const b = (s: string) => new Uint8Array(Buffer.from(s, 'latin1'));
    expect(detectCharset(b('<meta charset="windows-1252">'), 'text/html; charset=utf-8')).toBe('utf-8');
    expect(detectCharset(b('<meta charset="windows-1252">'), 'text/html')).toBe('windows-1252');
    expect(detectCharset(b("<meta content='text/html; charset=ISO-8859-1' http-equiv='Content-Type'>"), null)).toBe('iso-8859-1');
    expect(detectCharset(b('<?xml version="1.0" encoding="windows-1252"?><rss/>'), 'application/xml')).toBe('windows-1252');
    expect(detectCharset(b('<p>no declaration</p>'), 'text/html')).toBeNull();
    expect(detectCharset(b('<meta charset="no-such-charset">'), null)).toBeNull();
    expect(detectCharset(new Uint8Array([0xff, 0xfe, 0x41, 0]), 'text/html; charset=utf-8')).toBe('utf-16le');
  });

  it('parses Retry-After seconds and dates', () => {
    const now = Date.parse('2024-01-01T00:00:00Z');
    expect(parseRetryAfter('120', now)).toBe(120_000);
    expect(parseRetryAfter('Mon, 01 Jan 2024 00:00:30 GMT', now)).toBe(30_000);
    expect(parseRetryAfter('Sun, 31 Dec 2023 00:00:00 GMT', now)).toBe(0);
    expect(parseRetryAfter('soon', now)).toBeNull();
    expect(parseRetryAfter(null, now)).toBeNull();
  });

  it('tells text from binary', () => {
    const text = new Uint8Array(Buffer.from('<p>hi</p>'));
    expect(isBinary('text/html; charset=utf-8', text)).toBe(false);
    expect(isBinary('application/rss+xml', text)).toBe(false);
    expect(isBinary('application/pdf', text)).toBe(true);
    expect(isBinary(null, new Uint8Array([0x25, 0x50, 0x44, 0x46, 0]))).toBe(true);
  });
});
