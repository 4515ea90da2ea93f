/**
 * Signing in from a browser: POST /login exchanges the admin token for a session cookie
 * (HttpOnly, SameSite=Strict), POST /logout clears it, GET /api/session says where the browser
 * stands. Sign-in attempts are limited per client address, so the token cannot be guessed at
 * network speed.
 */
import { MorrisError } from '../errors.ts';
import { clearedSessionCookie, newSession, sessionCookie, tokenMatches, type AccessPolicy } from './auth.ts';
import type { Route } from './router.ts';

/** Sign-in attempts one address may make per window. */
export const LOGIN_ATTEMPTS_PER_WINDOW = 10;
export const LOGIN_WINDOW_MS = 60_000;

export function authRoutes(policy: AccessPolicy): Route[] {
  const attempts = new Map<string, { n: number; since: number }>();
  const spendAttempt = (addr: string) => {
    const now = Date.now();
    for (const [k, v] of attempts) if (now - v.since > LOGIN_WINDOW_MS) attempts.delete(k);
    const a = attempts.get(addr) ?? { n: 0, since: now };
    a.n++;
    attempts.set(addr, a);
    if (a.n > LOGIN_ATTEMPTS_PER_WINDOW) {
      throw new MorrisError('RATE_LIMITED', 'Too many sign-in attempts from this address.', { hint: 'Wait a minute and try again.' });
    }
  };
  return [
    {
      method: 'GET',
      path: '/api/session',
      access: 'public',
      handler: ({ principal }) => ({ signedIn: principal !== null, via: principal?.kind ?? null, tokenConfigured: Boolean(policy.adminToken) }),
    },
    {
      method: 'POST',
      path: '/login',
      access: 'public',
      handler: async ({ req, res, body }) => {
        if (!policy.adminToken) {
          throw new MorrisError('FORBIDDEN', 'Sign-in is off: MORRIS_ADMIN_TOKEN is not set, so the dashboard answers only on this machine.', {
            hint: 'Open the dashboard from the server itself, or set MORRIS_ADMIN_TOKEN and restart.',
          });
        }
        spendAttempt(req.socket.remoteAddress ?? '?');
        const b = await body();
        if (typeof b.token !== 'string' || !tokenMatches(b.token.trim(), policy.adminToken)) {
          throw new MorrisError('UNAUTHORIZED', 'That is not the admin token.', { hint: 'Use the value of MORRIS_ADMIN_TOKEN on the server.' });
        }
        const s = newSession(policy);
        res.setHeader('set-cookie', sessionCookie(policy, s.value, s.maxAgeS));
        return { ok: true, expiresInS: s.maxAgeS };
      },
    },
    {
      method: 'POST',
      path: '/logout',
      access: 'public',
      handler: ({ res }) => {
        res.setHeader('set-cookie', clearedSessionCookie(policy));
        return { ok: true };
      },
    },
  ];
}
