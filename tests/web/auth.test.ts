/** The access rules of src/web/auth.ts on plain request objects (the HTTP tests cover the wiring). */
import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { authenticate, hostName, isLoopbackAddress, newSession, notSignedIn, verifySession, type AccessPolicy } from '../../src/web/auth.ts';

function req(remoteAddress: string, headers: Record<string, string> = {}): IncomingMessage {
  return { socket: { remoteAddress }, headers } as unknown as IncomingMessage;
}

const withToken: AccessPolicy = { adminToken: 'tok-123', sessionHours: 1, secureCookies: false };
const noToken: AccessPolicy = { sessionHours: 1, secureCookies: false };

describe('web access', () => {
  it('without a token only this machine gets in, and only under a loopback Host name', () => {
    expect(authenticate(req('127.0.0.1', { host: '127.0.0.1:3000' }), noToken)).toEqual({ kind: 'local', id: 'local' });
    expect(authenticate(req('::1', { host: '[::1]:3000' }), noToken)).toEqual({ kind: 'local', id: 'local' });
    expect(authenticate(req('::ffff:127.0.0.1', { host: 'localhost:3000' }), noToken)).toEqual({ kind: 'local', id: 'local' });
    expect(authenticate(req('203.0.113.9', { host: '127.0.0.1:3000' }), noToken)).toBeNull();
    expect(authenticate(req('10.0.0.5', { host: 'morris.lan' }), noToken)).toBeNull();
    expect(authenticate(req('127.0.0.1', { host: 'rebound.example' }), noToken)).toBeNull();
    expect(notSignedIn(req('203.0.113.9'), noToken)).toMatchObject({ code: 'FORBIDDEN', status: 403, hint: expect.stringContaining('MORRIS_ADMIN_TOKEN') });
    // A bearer token is refused when none is configured: there is nothing it could match.
    expect(() => authenticate(req('127.0.0.1', { host: 'localhost', authorization: 'Bearer x' }), noToken)).toThrow(/Admin token missing or wrong/);
  });

  it('with a token, loopback is no exception: a session or the bearer token is needed', () => {
    expect(authenticate(req('127.0.0.1', { host: 'localhost' }), withToken)).toBeNull();
    expect(notSignedIn(req('127.0.0.1'), withToken)).toMatchObject({ code: 'UNAUTHORIZED', status: 401 });
    expect(authenticate(req('198.51.100.1', { authorization: 'Bearer tok-123' }), withToken)).toEqual({ kind: 'token', id: 'token' });
    expect(() => authenticate(req('198.51.100.1', { authorization: 'Bearer tok-12' }), withToken)).toThrow(/wrong/);
    const s = newSession(withToken);
    const id = verifySession(withToken, s.value);
    expect(id).toMatch(/^[\w-]{16}$/);
    expect(authenticate(req('198.51.100.1', { cookie: `a=b; morris_session=${s.value}` }), withToken)).toEqual({ kind: 'session', id });
  });

  it('sessions expire, and all of them end when the token changes', () => {
    const s = newSession(withToken, Date.now() - 2 * 3600_000);
    expect(verifySession(withToken, s.value)).toBeNull();
    const fresh = newSession(withToken);
    expect(verifySession({ ...withToken, adminToken: 'rotated' }, fresh.value)).toBeNull();
    expect(verifySession(withToken, 'garbage')).toBeNull();
  });

  it('reads addresses and Host names', () => {
    expect(isLoopbackAddress('127.8.9.10')).toBe(true);
    expect(isLoopbackAddress('128.0.0.1')).toBe(false);
    expect(hostName('[::1]:80')).toBe('::1');
    expect(hostName('Example.COM:443')).toBe('example.com');
    expect(hostName('example.com')).toBe('example.com');
  });
});
