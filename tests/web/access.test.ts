/**
 * Who may use Morris's HTTP port, with real HTTP on 127.0.0.1 against a real serve (tiny model,
 * Slack in HTTP mode against the fake Slack): only signed Slack events and /healthz are public;
 * everything else needs the bearer token or a session cookie from /login; state changes are
 * same-origin JSON; slow clients are cut by the timeouts; web traffic never crowds out Slack;
 * a replayed signed Slack request runs once.
 */
import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ServeHandle } from '../../src/serve/start.ts';
import { slackReplayGuard } from '../../src/store/slack-replays.ts';
import { FakeSlack, postSigned, slackSignature, slashCommand } from '../bot/fakes/slack-server.ts';
import { startTinyServe, waitFor } from '../jobs/helpers.ts';

const TOKEN = 'test-admin-token';
const SECRET = 'access-secret';

/** A raw request (fetch cannot set Host, and we want the exact bytes on the wire). */
function raw(url: string, opts: { method?: string; path: string; headers?: Record<string, string>; body?: string; localAddress?: string }) {
  const u = new URL(url);
  return new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>((resolve, reject) => {
    const req = http.request(
      { host: u.hostname, port: u.port, method: opts.method ?? 'GET', path: opts.path, headers: opts.headers, localAddress: opts.localAddress },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

function json(body: string) {
  return JSON.parse(body) as { error?: { code: string; message: string; hint?: string } } & Record<string, unknown>;
}

describe('the HTTP port of morris serve', () => {
  const fake = new FakeSlack();
  let h: ServeHandle;
  let close: () => Promise<void>;

  beforeAll(async () => {
    await fake.start();
    ({ h, close } = await startTinyServe(
      'morris-access-',
      {
        SLACK_BOT_TOKEN: 'xoxb-access',
        SLACK_SIGNING_SECRET: SECRET,
        SLACK_API_URL: fake.apiUrl,
        MORRIS_SLACK_ADMINS: 'UADMIN',
        MORRIS_PUBLIC_URL: 'https://morris.example.test',
        MORRIS_WEB_RATE_LIMIT_PER_MIN: '5',
        MORRIS_WEB_QUEUE_MAX: '2',
        MORRIS_USER_RATE_LIMIT_PER_MIN: '0',
        MORRIS_MAX_NEW_TOKENS: '40',
        MORRIS_COLUMNIST: 'Access Columnist',
      },
      { bots: true, httpLimits: { headersTimeoutMs: 1500, requestTimeoutMs: 2500, maxConnectionsPerAddress: 32 } },
    ));
    await h.bots.settled();
    expect(h.bots.platforms().slack.state).toBe('connected');
  }, 60_000);

  afterAll(async () => {
    await close?.();
    await fake.stop();
  });

  const slash = (command: string, text: string, user_id: string, over: { timestamp?: number; body?: string } = {}) => {
    const body = over.body ?? new URLSearchParams(slashCommand(fake, { command, text, user_id, channel_id: 'CACCESS' })).toString();
    return { body, send: () => postSigned(`${h.publicUrl}/slack/events`, body, { secret: SECRET, contentType: 'application/x-www-form-urlencoded', timestamp: over.timestamp }) };
  };

  it('without a session: pages redirect to /login, every API read is 401 with a hint, Slack events and /healthz stay public', async () => {
    for (const p of ['/', '/index.html']) {
      const r = await raw(h.url, { path: p });
      expect(r.status).toBe(302);
      expect(r.headers.location).toBe('/login');
    }
    for (const p of ['/app.js', '/api/status', '/api/data', '/api/jobs', '/api/jobs/1', '/api/jobs/events', '/api/adapters', '/api/adapters/x', '/api/generations', '/api/generations/g-0123456789', '/api/pairs', '/api/columnists']) {
      const r = await raw(h.url, { path: p });
      expect(r.status, p).toBe(401);
      expect(json(r.body).error).toMatchObject({ code: 'UNAUTHORIZED', hint: expect.stringContaining('/login') });
    }
    const gen = await raw(h.url, { method: 'POST', path: '/api/generate', headers: { 'content-type': 'application/json' }, body: '{"topic":"x"}' });
    expect(gen.status).toBe(401);
    const health = await raw(h.url, { path: '/healthz' });
    expect(health.status).toBe(200);
    expect(json(health.body)).toEqual({ status: 'ok', platforms: { slack: 'connected', discord: 'off' } });
    const login = await raw(h.url, { path: '/login' });
    expect(login.status).toBe(200);
    expect(login.body).toContain('id="login-form"');
    // Security headers on pages and API answers alike.
    for (const r of [login, gen, health]) {
      expect(r.headers['content-security-policy']).toMatch(/script-src 'self'.*frame-ancestors 'none'/);
      expect(r.headers['content-security-policy']).not.toContain('unsafe-inline');
      expect(r.headers['x-content-type-options']).toBe('nosniff');
      expect(r.headers['x-frame-options']).toBe('DENY');
    }
    // Slack's endpoint still works with a good signature, and refuses a bad one.
    expect((await slash('/morris-admin', 'adapters', 'UADMIN').send()).status).toBe(200);
    const bad = await postSigned(`${h.publicUrl}/slack/events`, 'command=%2Fmorris&text=x', { secret: 'wrong', contentType: 'application/x-www-form-urlencoded' });
    expect(bad.status).toBe(401);
  });

  it('the bearer token or the session cookie from /login opens everything; a forged cookie does not', async () => {
    const bearer = await raw(h.url, { path: '/api/status', headers: { authorization: `Bearer ${TOKEN}` } });
    expect(bearer.status).toBe(200);
    expect(json(bearer.body).bots).toEqual([{ platform: 'slack', state: 'connected', attempts: 1 }]);
    expect((await raw(h.url, { path: '/api/status', headers: { authorization: 'Bearer nope' } })).status).toBe(401);

    const wrong = await raw(h.url, { method: 'POST', path: '/login', headers: { 'content-type': 'application/json' }, body: '{"token":"guess"}' });
    expect(wrong.status).toBe(401);
    expect(json(wrong.body).error).toMatchObject({ code: 'UNAUTHORIZED', hint: expect.any(String) });
    const ok = await raw(h.url, { method: 'POST', path: '/login', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: TOKEN }) });
    expect(ok.status).toBe(200);
    const setCookie = String(ok.headers['set-cookie']);
    expect(setCookie).toMatch(/^morris_session=[^;]+; Path=\/; HttpOnly; SameSite=Strict; Max-Age=43200; Secure$/);
    const cookie = setCookie.split(';')[0]!;
    for (const p of ['/api/status', '/api/data', '/api/jobs', '/api/adapters', '/app.js', '/']) {
      expect((await raw(h.url, { path: p, headers: { cookie } })).status, p).toBe(200);
    }
    const session = await raw(h.url, { path: '/api/session', headers: { cookie } });
    expect(json(session.body)).toEqual({ signedIn: true, via: 'session', tokenConfigured: true });
    // A cookie with its expiry pushed out, or its mac changed, is not a session.
    const [exp, nonce, mac] = cookie.split('=')[1]!.split('.');
    for (const forged of [`${Number(exp) + 3600}.${nonce}.${mac}`, `${exp}.${nonce}.${mac!.slice(0, -2)}AA`]) {
      expect((await raw(h.url, { path: '/api/status', headers: { cookie: `morris_session=${forged}` } })).status).toBe(401);
    }
    const out = await raw(h.url, { method: 'POST', path: '/logout', headers: { 'content-type': 'application/json', cookie }, body: '{}' });
    expect(String(out.headers['set-cookie'])).toMatch(/^morris_session=; .*Max-Age=0/);
  });

  it('state changes are same-origin JSON: text/plain is 415, a cross-site POST is 403, none reaches the handler', async () => {
    const login = await raw(h.url, { method: 'POST', path: '/login', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: TOKEN }) });
    const cookie = String(login.headers['set-cookie']).split(';')[0]!;
    const active = h.registry.active()?.id ?? null;
    const plain = await raw(h.url, { method: 'POST', path: '/api/generate', headers: { cookie, 'content-type': 'text/plain' }, body: '{"topic":"csrf"}' });
    expect(plain.status).toBe(415);
    expect(json(plain.body).error).toMatchObject({ code: 'BAD_INPUT', hint: expect.stringContaining('application/json') });
    const form = await raw(h.url, { method: 'POST', path: '/api/adapters/rollback', headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' }, body: '' });
    expect(form.status).toBe(415);
    const cross = await raw(h.url, {
      method: 'POST',
      path: '/api/adapters/rollback',
      headers: { cookie, 'content-type': 'application/json', origin: 'https://evil.example' },
      body: '{}',
    });
    expect(cross.status).toBe(403);
    expect(json(cross.body).error!.code).toBe('FORBIDDEN');
    const site = await raw(h.url, { method: 'POST', path: '/api/jobs/rebuild/run', headers: { cookie, 'content-type': 'application/json', 'sec-fetch-site': 'cross-site' }, body: '{}' });
    expect(site.status).toBe(403);
    // No cookie (what SameSite=Strict leaves a cross-site request with): not signed in.
    const anon = await raw(h.url, { method: 'POST', path: '/api/adapters/rollback', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(anon.status).toBe(401);
    expect(h.registry.active()?.id ?? null).toBe(active);
    expect(h.store.prepare("SELECT COUNT(*) AS n FROM generations WHERE topic = 'csrf'").get()).toEqual({ n: 0 });
    // A Host this server was not told about (DNS rebinding, a stray vhost) is refused.
    const host = await raw(h.url, { path: '/api/status', headers: { host: 'evil.example', authorization: `Bearer ${TOKEN}` } });
    expect(host.status).toBe(421);
    expect((await raw(h.url, { path: '/healthz', headers: { host: 'morris.example.test' } })).status).toBe(200);
    const big = await raw(h.url, { method: 'POST', path: '/api/generate', headers: { cookie, 'content-type': 'application/json' }, body: JSON.stringify({ topic: 'x'.repeat(70_000) }) });
    expect(big.status).toBe(413);
  });

  it('a replayed signed /morris-admin runs once (also for a fresh guard over the same database); a future timestamp is refused', async () => {
    const auditCount = () => (h.store.prepare("SELECT COUNT(*) AS n FROM audit_log WHERE command = 'status'").get() as { n: number }).n;
    const before = auditCount();
    const req = slash('/morris-admin', 'status', 'UADMIN');
    const ts = Math.floor(Date.now() / 1000);
    const send = () => postSigned(`${h.publicUrl}/slack/events`, req.body, { secret: SECRET, contentType: 'application/x-www-form-urlencoded', timestamp: ts });
    const first = await send();
    expect(first.status).toBe(200);
    expect(JSON.parse(first.text).text).toBeTruthy();
    for (let i = 0; i < 2; i++) {
      const again = await send();
      expect(again.status).toBe(200); // acknowledged, so Slack does not retry it
      expect(again.text).toBe('');
    }
    expect(auditCount()).toBe(before + 1);
    // The memory is the database, so a restarted process still knows the signature.
    expect(slackReplayGuard(h.store).firstSeen(slackSignature(SECRET, ts, req.body), ts)).toBe(false);
    const future = await postSigned(`${h.publicUrl}/slack/events`, slash('/morris-admin', 'status', 'UADMIN').body, {
      secret: SECRET,
      contentType: 'application/x-www-form-urlencoded',
      timestamp: ts + 3600,
    });
    expect(future.status).toBe(401);
    expect(auditCount()).toBe(before + 1);
  });

  it('20 playground requests from one session hit its rate limit and never make a Slack request wait for a place or fail', async () => {
    const login = await raw(h.url, { method: 'POST', path: '/login', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: TOKEN }) });
    const cookie = String(login.headers['set-cookie']).split(';')[0]!;
    const web = Array.from({ length: 20 }, (_, i) =>
      raw(h.url, { method: 'POST', path: '/api/generate', headers: { cookie, 'content-type': 'application/json' }, body: JSON.stringify({ topic: `flood ${i}`, maxNewTokens: 40 }) }),
    );
    // The Slack request arrives while the web ones run and wait.
    await waitFor(() => (h.service.status().running ? true : null), 30_000);
    const t0 = Date.now();
    const ack = await slash('/morris', 'the spectrum auction', 'USLACK').send();
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(JSON.parse(ack.text).text).toBe('Writing about “the spectrum auction”…');
    const results = await Promise.all(web);
    const limited = results.filter((r) => r.status === 429);
    expect(limited).toHaveLength(15);
    expect(json(limited[0]!.body).error).toMatchObject({ code: 'RATE_LIMITED', hint: expect.any(String) });
    const streamed = results.filter((r) => r.status === 200);
    expect(streamed).toHaveLength(5);
    // At most one running and MORRIS_WEB_QUEUE_MAX waiting: the rest were told the queue is full.
    const done = streamed.filter((r) => r.body.includes('event: done'));
    expect(done.length).toBeGreaterThanOrEqual(1);
    expect(done.length).toBeLessThanOrEqual(3);
    for (const r of done) expect(r.body).toMatch(/AI-generated in the style of Access Columnist/);
    const answer = await waitFor(() => fake.messages.find((m) => m.channel === 'CACCESS' && m.text.includes('Access Columnist')), 60_000);
    expect(answer.text).not.toMatch(/queue is full/);
    const row = h.store.prepare("SELECT outcome FROM generations WHERE topic = 'the spectrum auction'").get();
    expect(row).toEqual({ outcome: 'ok' });
    // The Slack request went ahead of the web requests still waiting when it came.
    const order = h.store.prepare("SELECT topic, outcome FROM generations WHERE platform IN ('web', 'slack') AND outcome = 'ok' ORDER BY started_at").all() as { topic: string }[];
    expect(order.some((r) => r.topic === 'the spectrum auction')).toBe(true);
  }, 120_000);

  it('200 connections dripping their bodies are cut by the timeouts while /healthz and signed Slack events answer in time', async () => {
    const port = Number(new URL(h.publicUrl).port);
    const sockets: net.Socket[] = [];
    let closed = 0;
    for (let i = 0; i < 200; i++) {
      const s = net.connect({ port, host: '127.0.0.1', localAddress: '127.0.0.2' });
      s.on('error', () => undefined);
      s.on('close', () => closed++);
      s.on('connect', () => s.write(`POST /slack/events HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{`));
      sockets.push(s);
    }
    const drip = setInterval(() => {
      for (const s of sockets) if (!s.destroyed) s.write(' ');
    }, 200);
    try {
      await new Promise((r) => setTimeout(r, 500));
      const t0 = Date.now();
      expect((await raw(h.publicUrl, { path: '/healthz' })).status).toBe(200);
      expect((await slash('/morris-admin', 'adapters', 'UADMIN').send()).status).toBe(200);
      expect(Date.now() - t0).toBeLessThan(2000);
      // Beyond the per-address cap they were closed at once; the rest by the request timeout.
      await waitFor(() => closed === 200 || null, 10_000);
    } finally {
      clearInterval(drip);
      for (const s of sockets) s.destroy();
    }
    expect((await raw(h.publicUrl, { path: '/healthz' })).status).toBe(200);
  }, 30_000);
});

describe('a separate dashboard listener, and no admin token', () => {
  let h: ServeHandle;
  let close: () => Promise<void>;

  beforeAll(async () => {
    // No MORRIS_ADMIN_TOKEN: the dashboard answers only to this machine, under a loopback name.
    ({ h, close } = await startTinyServe('morris-access-split-', { MORRIS_ADMIN_TOKEN: '' }, { dashboardPort: 0 }));
  }, 60_000);
  afterAll(async () => close?.());

  it('the public port answers only Slack events and /healthz; the dashboard has its own port', async () => {
    expect(h.publicUrl).not.toBe(h.url);
    expect((await raw(h.publicUrl, { path: '/healthz' })).status).toBe(200);
    for (const p of ['/', '/api/status', '/login', '/app.js']) expect((await raw(h.publicUrl, { path: p })).status, p).toBe(404);
    const slack = await raw(h.publicUrl, { method: 'POST', path: '/slack/events', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(slack.status).toBe(404);
    expect(json(slack.body).error!.hint).toContain('SLACK_SIGNING_SECRET');
    const page = await raw(h.url, { path: '/' });
    expect(page.status).toBe(200);
    expect(page.body).toContain('<title>Morris — dashboard</title>');
    expect((await raw(h.url, { path: '/api/status' })).status).toBe(200);
  });

  it('without a token: loopback clients under a loopback Host are let in; another Host name (DNS rebinding) is not; sign-in is off', async () => {
    const rebound = await raw(h.url, { path: '/api/status', headers: { host: 'attacker.example:80' } });
    expect(rebound.status).toBe(403);
    expect(json(rebound.body).error).toMatchObject({ code: 'FORBIDDEN', hint: expect.stringContaining('MORRIS_ADMIN_TOKEN') });
    expect((await raw(h.url, { path: '/api/status', headers: { host: 'localhost' } })).status).toBe(200);
    const login = await raw(h.url, { method: 'POST', path: '/login', headers: { 'content-type': 'application/json' }, body: '{"token":"x"}' });
    expect(login.status).toBe(403);
    expect(json((await raw(h.url, { path: '/api/session' })).body)).toEqual({ signedIn: true, via: 'local', tokenConfigured: false });
  });
});
