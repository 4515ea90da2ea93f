/**
 * Who may use the dashboard and its API. Scripts send `Authorization: Bearer <MORRIS_ADMIN_TOKEN>`;
 * browsers sign in once on /login and get an HttpOnly, SameSite=Strict session cookie, so the
 * token never sits in page storage and a cross-site page can neither read it nor send it. With no
 * token configured, only clients on this machine (loopback) are let in, and only under a loopback
 * Host name, so a DNS-rebinding page cannot borrow the local operator's access.
 *
 * Sessions are stateless: the cookie is `<expiry>.<nonce>.<mac>`, with the mac keyed by the admin
 * token, so sessions survive a restart and all of them end when the token changes.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { MorrisError } from '../errors.ts';

export const SESSION_COOKIE = 'morris_session';
export const DEFAULT_SESSION_HOURS = 12;

export interface AccessPolicy {
  /** MORRIS_ADMIN_TOKEN; undefined → loopback-only access. */
  adminToken?: string;
  sessionHours: number;
  /** Cookies get `Secure` when the public URL is https. */
  secureCookies: boolean;
}

/** Who a request is: a bearer-token script, a signed-in browser session, or the local operator. */
export type Principal = { kind: 'token'; id: 'token' } | { kind: 'session'; id: string } | { kind: 'local'; id: 'local' };

export function isLoopbackAddress(addr: string | undefined): boolean {
  if (!addr) return false;
  const a = addr.startsWith('::ffff:') ? addr.slice(7) : addr;
  return a === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(a);
}

/** The host part of a Host header (`[::1]:3000` → `::1`, `localhost:3000` → `localhost`). */
export function hostName(hostHeader: string | undefined): string {
  const h = (hostHeader ?? '').trim().toLowerCase();
  if (h.startsWith('[')) return h.slice(1, h.indexOf(']') > 0 ? h.indexOf(']') : undefined);
  const colon = h.lastIndexOf(':');
  return colon > 0 && h.indexOf(':') === colon ? h.slice(0, colon) : h;
}

export function isLoopbackHostName(name: string): boolean {
  return name === 'localhost' || name.endsWith('.localhost') || isLoopbackAddress(name);
}

function sameLength(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

export function tokenMatches(given: string, expected: string): boolean {
  // Compare digests so the comparison takes the same time whatever the lengths.
  const d = (s: string) => createHmac('sha256', 'morris-token-compare').update(s).digest();
  return sameLength(d(given), d(expected));
}

function sessionKey(adminToken: string): Buffer {
  return createHmac('sha256', adminToken).update('morris-session-v1').digest();
}

function mac(adminToken: string, payload: string): string {
  return createHmac('sha256', sessionKey(adminToken)).update(payload).digest('base64url');
}

/** A new session cookie value for a signed-in admin, valid for policy.sessionHours. */
export function newSession(policy: AccessPolicy, now = Date.now()): { value: string; maxAgeS: number } {
  if (!policy.adminToken) throw new MorrisError('INTERNAL', 'Sessions need an admin token.');
  const maxAgeS = Math.round(policy.sessionHours * 3600);
  const payload = `${Math.floor(now / 1000) + maxAgeS}.${randomBytes(12).toString('base64url')}`;
  return { value: `${payload}.${mac(policy.adminToken, payload)}`, maxAgeS };
}

/** The session's id (its nonce) when the cookie is genuine and unexpired; else null. */
export function verifySession(policy: AccessPolicy, value: string | undefined, now = Date.now()): string | null {
  if (!policy.adminToken || !value) return null;
  const parts = value.split('.');
  if (parts.length !== 3) return null;
  const [exp, nonce, given] = parts as [string, string, string];
  if (!/^\d+$/.test(exp) || Number(exp) * 1000 <= now) return null;
  const want = mac(policy.adminToken, `${exp}.${nonce}`);
  return sameLength(Buffer.from(given), Buffer.from(want)) ? nonce : null;
}

export function sessionCookie(policy: AccessPolicy, value: string, maxAgeS: number): string {
  return [`${SESSION_COOKIE}=${value}`, 'Path=/', 'HttpOnly', 'SameSite=Strict', `Max-Age=${maxAgeS}`, ...(policy.secureCookies ? ['Secure'] : [])].join('; ');
}

export function clearedSessionCookie(policy: AccessPolicy): string {
  return sessionCookie(policy, '', 0);
}

export function readCookie(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return undefined;
}

/** The principal a request carries, or null (not signed in). Throws only for a wrong bearer token. */
export function authenticate(req: IncomingMessage, policy: AccessPolicy): Principal | null {
  const auth = req.headers.authorization;
  if (auth !== undefined) {
    const m = /^Bearer\s+(.+)$/i.exec(auth);
    if (!policy.adminToken || !m || !tokenMatches(m[1]!.trim(), policy.adminToken)) {
      throw new MorrisError('UNAUTHORIZED', 'Admin token missing or wrong.', { hint: 'Send "Authorization: Bearer <MORRIS_ADMIN_TOKEN>".' });
    }
    return { kind: 'token', id: 'token' };
  }
  const session = verifySession(policy, readCookie(req, SESSION_COOKIE));
  if (session) return { kind: 'session', id: session };
  if (!policy.adminToken && isLoopbackAddress(req.socket.remoteAddress) && isLoopbackHostName(hostName(req.headers.host))) {
    return { kind: 'local', id: 'local' };
  }
  return null;
}

/** The refusal for a request with no principal: what to do next depends on the setup. */
export function notSignedIn(req: IncomingMessage, policy: AccessPolicy): MorrisError {
  if (!policy.adminToken) {
    return new MorrisError('FORBIDDEN', 'The dashboard answers only on this machine while MORRIS_ADMIN_TOKEN is not set.', {
      hint: 'Open it from the server itself (http://127.0.0.1:PORT), or set MORRIS_ADMIN_TOKEN and sign in at /login.',
    });
  }
  return new MorrisError('UNAUTHORIZED', 'Sign in first.', {
    hint: 'Browsers: sign in at /login with the admin token. Scripts: send "Authorization: Bearer <MORRIS_ADMIN_TOKEN>".',
  });
}
