/**
 * Where a scrape may go. A source names the hosts (host:port) it may fetch from; every request the
 * fetcher makes — listing pages, feeds, sitemaps, articles, and each redirect hop — is checked here
 * first, so a public page cannot point the scraper at an internal service. Besides the host list,
 * addresses in private, loopback, link-local and other non-public ranges are refused, unless the
 * source's own base URL is at such an address (the offline demo and the tests serve from
 * 127.0.0.1). Names are resolved before the check, so a public name that resolves to 10.0.0.5 is
 * refused too.
 *
 * Limitation, stated so nobody relies on more: the name is resolved here and again by fetch when
 * it connects, so a DNS server that answers differently within those milliseconds (DNS rebinding)
 * could still win; pinning the checked address would need our own HTTP agent.
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';

/** Resolves a host name to its addresses (node:dns by default; tests inject their own). */
export type Lookup = (hostname: string) => Promise<string[]>;

const NON_PUBLIC = new BlockList();
for (const [net, bits] of [
  ['0.0.0.0', 8], // "this network": 0.0.0.0 reaches the local host on Linux
  ['10.0.0.0', 8],
  ['100.64.0.0', 10], // carrier-grade NAT
  ['127.0.0.0', 8],
  ['169.254.0.0', 16], // link-local, including cloud metadata at 169.254.169.254
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, and broadcast
] as const) NON_PUBLIC.addSubnet(net, bits, 'ipv4');
for (const [net, bits] of [
  ['::', 128],
  ['::1', 128],
  ['fc00::', 7], // unique local
  ['fe80::', 10], // link-local
  ['fec0::', 10], // old site-local
  ['ff00::', 8], // multicast
] as const) NON_PUBLIC.addSubnet(net, bits, 'ipv6');

/** True for an IP address no public web page should make us connect to. */
export function isNonPublicAddress(address: string): boolean {
  const a = address.replace(/^\[|\]$/g, '');
  const family = isIP(a);
  if (family === 4) return NON_PUBLIC.check(a, 'ipv4');
  if (family !== 6) return false;
  // IPv4-mapped (::ffff:a.b.c.d) and NAT64 (64:ff9b::a.b.c.d) addresses reach an IPv4 host.
  const v4 = embeddedIpv4(a);
  return NON_PUBLIC.check(a, 'ipv6') || (v4 !== null && NON_PUBLIC.check(v4, 'ipv4'));
}

/** The IPv4 address inside ::ffff:0:0/96 or 64:ff9b::/96, else null. */
function embeddedIpv4(v6: string): string | null {
  const groups = expandIpv6(v6);
  if (!groups) return null;
  const mapped = groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff;
  const nat64 = groups[0] === 0x64 && groups[1] === 0xff9b && groups.slice(2, 6).every((g) => g === 0);
  if (!mapped && !nat64) return null;
  return [groups[6] >> 8, groups[6] & 0xff, groups[7] >> 8, groups[7] & 0xff].join('.');
}

/** Eight 16-bit groups of an IPv6 address (dotted IPv4 tail allowed), or null. */
function expandIpv6(v6: string): number[] | null {
  let s = v6.toLowerCase().split('%')[0];
  const dotted = s.match(/(\d+\.\d+\.\d+\.\d+)$/);
  if (dotted) {
    const [a, b, c, d] = dotted[1].split('.').map(Number);
    s = `${s.slice(0, -dotted[1].length)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = s.split('::');
  const part = (x: string | undefined) => (x ? x.split(':').map((g) => parseInt(g, 16)) : []);
  const h = part(head);
  const t = part(tail);
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill(0), ...t];
  return groups.length === 8 && groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff) ? groups : null;
}

const systemLookup: Lookup = async (hostname) => (await dnsLookup(hostname, { all: true, verbatim: true })).map((r) => r.address);

export class HostPolicy {
  readonly hosts: ReadonlySet<string>;
  private readonly ownHostname: string | null;
  private readonly lookup: Lookup;
  private readonly resolved = new Map<string, Promise<string[]>>();
  private ownIsPrivate?: Promise<boolean>;

  /**
   * @param hosts host:port strings (as `URL.host` writes them: the port only when not the default)
   * @param ownUrl the source's own base URL; when it is at a non-public address, that host name may
   *   be fetched at such addresses (and only that one)
   */
  constructor(hosts: Iterable<string>, ownUrl: string | null, opts: { lookup?: Lookup } = {}) {
    this.hosts = new Set([...hosts].map((h) => h.toLowerCase()));
    this.ownHostname = ownUrl ? new URL(ownUrl).hostname : null;
    this.lookup = opts.lookup ?? systemLookup;
  }

  /** Why `url` may not be fetched, or null when it may. Never throws. */
  async refusal(url: string): Promise<string | null> {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      return `not a URL: ${url}`;
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return `${u.protocol} is not http(s)`;
    if (!this.hosts.has(u.host)) return `host ${u.host} is not one of this source's hosts (${[...this.hosts].join(', ')})`;
    const addresses = await this.addresses(u.hostname);
    const bad = addresses.find(isNonPublicAddress);
    if (!bad) return null;
    if (u.hostname === this.ownHostname && (await this.ownPrivate())) return null;
    return `${u.hostname} is at the non-public address ${bad} (private, loopback and link-local addresses are fetched only when the source's own base URL is one)`;
  }

  private ownPrivate(): Promise<boolean> {
    const own = this.ownHostname;
    this.ownIsPrivate ??= own ? this.addresses(own).then((a) => a.some(isNonPublicAddress)) : Promise.resolve(false);
    return this.ownIsPrivate;
  }

  /** Addresses of a host name, once per run; a literal IP is its own address. */
  private addresses(hostname: string): Promise<string[]> {
    const bare = hostname.replace(/^\[|\]$/g, '');
    if (isIP(bare)) return Promise.resolve([bare]);
    let p = this.resolved.get(bare);
    if (!p) {
      // A name that does not resolve is left to fetch, which fails with a clear network error.
      p = this.lookup(bare).catch(() => []);
      this.resolved.set(bare, p);
    }
    return p;
  }
}
