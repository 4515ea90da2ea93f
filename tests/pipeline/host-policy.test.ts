import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HostPolicy, isNonPublicAddress, type Lookup } from '../../src/pipeline/crawl/host-policy.ts';
import { allowedHosts, ownUrl, parseProfile } from '../../src/pipeline/crawl/profile.ts';
import { Fetcher } from '../../src/pipeline/crawl/fetch.ts';
import { CrawlBudget } from '../../src/pipeline/crawl/budget.ts';
import { encodingProblem, MAX_REPLACEMENT_SHARE, replacementShare } from '../../src/pipeline/extract/quality.ts';
import { html, startFixture, type Fixture } from './fixture-server.ts';

/** A resolver that knows a few made-up names, as a hostile DNS would answer them. */
const DNS: Record<string, string[]> = {
  'www.example.org': ['93.184.216.34'],
  'rebound.example.org': ['93.184.216.34', '10.1.2.3'],
  'intranet.example': ['fd00::5'],
  'metadata.example': ['169.254.169.254'],
};
const lookup: Lookup = async (h) => {
  if (!DNS[h]) throw new Error(`ENOTFOUND ${h}`);
  return DNS[h];
};

describe('non-public addresses', () => {
  it('covers private, loopback, link-local and reserved IPv4 and IPv6 ranges, including IPv4 inside IPv6', () => {
    for (const a of ['127.0.0.1', '127.9.9.9', '10.0.0.1', '172.16.0.1', '172.31.255.255', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '255.255.255.255', '224.0.0.1',
      '::1', '::', 'fe80::1', 'fc00::1', 'fd12:3456::1', 'ff02::1', '::ffff:127.0.0.1', '::ffff:7f00:1', '[::ffff:a00:1]', '64:ff9b::10.0.0.1']) {
      expect(isNonPublicAddress(a), a).toBe(true);
    }
    for (const a of ['93.184.216.34', '8.8.8.8', '172.32.0.1', '192.169.0.1', '2606:4700::1111', '::ffff:8.8.8.8', '64:ff9b::8.8.8.8', 'not-an-ip']) {
      expect(isNonPublicAddress(a), a).toBe(false);
    }
  });
});

describe('HostPolicy', () => {
  it('allows only its hosts (host and port), and names them when it refuses', async () => {
    const p = new HostPolicy(['www.example.org'], 'https://www.example.org', { lookup });
    expect(await p.refusal('https://www.example.org/a')).toBeNull();
    expect(await p.refusal('https://www.example.org:8443/a')).toBe("host www.example.org:8443 is not one of this source's hosts (www.example.org)");
    expect(await p.refusal('https://evil.example/a')).toMatch(/host evil\.example is not one/);
    expect(await p.refusal('ftp://www.example.org/a')).toBe('ftp: is not http(s)');
  });

  it('refuses an allowed host that resolves to a private address, unless the source itself lives at one', async () => {
    const p = new HostPolicy(['rebound.example.org', 'intranet.example', 'metadata.example', '127.0.0.1:8080', '[::1]:8080'], 'https://www.example.org', { lookup });
    expect(await p.refusal('https://rebound.example.org/')).toMatch(/rebound\.example\.org is at the non-public address 10\.1\.2\.3/);
    expect(await p.refusal('http://intranet.example/')).toMatch(/non-public address fd00::5/);
    expect(await p.refusal('http://metadata.example/latest/')).toMatch(/169\.254\.169\.254/);
    expect(await p.refusal('http://127.0.0.1:8080/')).toMatch(/non-public address 127\.0\.0\.1/);
    expect(await p.refusal('http://[::1]:8080/')).toMatch(/non-public address ::1/);
    // The demo and the tests: a source based on 127.0.0.1 may fetch 127.0.0.1 (its own port only).
    const local = new HostPolicy(['127.0.0.1:8080'], 'http://127.0.0.1:8080', { lookup });
    expect(await local.refusal('http://127.0.0.1:8080/columns/')).toBeNull();
    expect(await local.refusal('http://127.0.0.1:8081/')).toMatch(/not one of this source's hosts \(127\.0\.0\.1:8080\)/);
    // The exemption is for the source's own host name, not for every private host it lists.
    const mixed = new HostPolicy(['127.0.0.1:8080', 'intranet.example'], 'http://127.0.0.1:8080', { lookup });
    expect(await mixed.refusal('http://intranet.example/')).toMatch(/non-public address/);
  });

  it('defaults to the profile base URL host and its own URLs; `hosts` replaces that', () => {
    const p = parseProfile({ name: 'x', listings: [{ url: '{{baseUrl}}/list' }], feeds: ['https://feeds.example.org/rss'] }, { baseUrl: 'http://127.0.0.1:39300/' });
    expect(allowedHosts(p)).toEqual(['127.0.0.1:39300', 'feeds.example.org']);
    expect(ownUrl(p)).toBe('http://127.0.0.1:39300');
    const q = parseProfile({ name: 'y', listings: [{ url: 'https://www.example.org/list' }], hosts: ['www.example.org', 'cdn.example.org'] });
    expect(allowedHosts(q)).toEqual(['www.example.org', 'cdn.example.org']);
    expect(ownUrl(q)).toBe('https://www.example.org/list');
    expect(() => parseProfile({ name: 'z', feeds: ['https://a/f'], hosts: ['https://a/'] })).toThrow(/hosts\.0: a host or host:port/);
  });
});

describe('Fetcher with a host policy', () => {
  let f: Fixture;
  beforeAll(async () => {
    f = await startFixture({ '/robots.txt': html('', 'text/plain'), '/page': html('<p>internal</p>') });
  });
  afterAll(() => f.close());

  it('refuses a private address for a public source before sending anything', async () => {
    const hostPolicy = new HostPolicy(['www.example.org', new URL(f.url).host], 'https://www.example.org', { lookup });
    const fx = new Fetcher({ userAgent: 'MorrisBot/test', rateLimitRps: 100, hostConcurrency: 1, timeoutMs: 2000, retries: 0, maxBytes: 10_000, hostPolicy });
    const err = await fx.get(`${f.url}/page`).catch((e) => e);
    expect(err.code).toBe('OFF_HOST');
    expect(err.message).toMatch(/^Refused http:\/\/127\.0\.0\.1:\d+\/page: 127\.0\.0\.1 is at the non-public address 127\.0\.0\.1/);
    expect(f.log).toEqual([]);
  });
});

describe('CrawlBudget', () => {
  it('counts URLs, fetches, bytes and time, and reports each cap once', () => {
    let bytes = 0;
    let now = 0;
    const b = new CrawlBudget({ urls: 2, fetches: 3, bytes: 100, seconds: 10 }, () => bytes, () => now);
    expect([b.takeUrl(), b.takeUrl(), b.takeUrl(), b.takeUrl()]).toEqual([true, true, false, false]);
    expect(b.takeFetch()).toBeNull();
    bytes = 100;
    expect(b.takeFetch()?.cap).toBe('bytes');
    bytes = 0;
    expect(b.takeFetch()?.cap).toBe('bytes'); // once reached, it stays reached
    expect(b.hits.map((h) => h.cap)).toEqual(['urls', 'bytes']);
    const t = new CrawlBudget({ urls: 1, fetches: 100, bytes: 100, seconds: 10 }, () => 0, () => now);
    now = 10_000;
    expect(t.takeFetch()).toMatchObject({ cap: 'seconds', message: 'stopped at the seconds cap (10 s of wall time)' });
  });
});

describe('text quality gate', () => {
  it('measures the share of replacement characters against the named threshold', () => {
    expect(MAX_REPLACEMENT_SHARE).toBe(0.01);
    expect(replacementShare('')).toBe(0);
    expect(replacementShare('ab\ufffd\ufffd')).toBe(0.5);
    expect(encodingProblem(`${'a'.repeat(99)}\ufffd`, 'utf-8')).toBeNull(); // exactly 1%: kept
    expect(encodingProblem(`${'a'.repeat(98)}\ufffd\ufffd`, 'utf-8')).toMatch(/^bad-encoding: 2\.0% of the text is U\+FFFD/);
  });
});
