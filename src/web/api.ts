/**
 * The dashboard's JSON REST API (documented in docs/api.md). The pages use exactly these
 * endpoints; scripts can too. Every route needs a signed-in admin (router.ts, auth.ts). The
 * playground is one more platform of the bots' core: the same topic limits, blocklist, rate
 * limit, queue and `generations` record as a Slack or Discord request.
 */
import type { Store } from '../store/db.ts';
import { MorrisError } from '../errors.ts';
import type { ReplyUpdate, TextGenerator } from '../bot/types.ts';
import type { BotCore, RefusalReason } from '../bot/core.ts';
import type { JobControl } from '../jobs/control.ts';
import type { Scheduler } from '../jobs/scheduler.ts';
import type { AdapterRegistry } from '../jobs/registry.ts';
import { adapterHistory, adapterValLoss, getAdapter } from '../jobs/registry.ts';
import { getLogs, getRun, listRuns, type JobStatus } from '../store/job-runs.ts';
import type { RunnerEvent } from '../jobs/runner.ts';
import { RESPONDED, startSse, type RequestContext, type Route } from './router.ts';
import { recentDatasets } from '../store/datasets.ts';
import { articleCounts, okArticleCount } from '../store/articles.ts';
import { scrapesBySource } from '../store/scrape-runs.ts';
import { lossPoints } from '../store/train-metrics.ts';

/** Playground limit on tokens: the page is a demo, not a bulk endpoint. */
export const PLAYGROUND_MAX_NEW_TOKENS = 1024;
/** SSE comment lines keep proxies from closing a quiet job-events stream. */
export const SSE_HEARTBEAT_MS = 15_000;

export interface BotStatus {
  platform: string;
  /** connected, starting, retrying or failed (see bot/index.ts PlatformState). */
  state: string;
  detail?: string;
  attempts?: number;
}

export interface DashboardDeps {
  store: Store;
  control: JobControl;
  scheduler?: Scheduler;
  registry: AdapterRegistry;
  generator: TextGenerator;
  /** The bots' command core: the playground's requests go through it as platform `web`. */
  core: BotCore;
  /** Model, device, loaded or not, queue length: whatever the generation service reports. */
  engineStatus(): Promise<Record<string, unknown>> | Record<string, unknown>;
  bots(): BotStatus[];
  /** Counts generations in flight so shutdown can wait for them. */
  track<T>(p: Promise<T>): Promise<T>;
  defaultMaxNewTokens: number;
  version: string;
  /** Aborted when the server shuts down: long-lived event streams end at once. */
  shutdown?: AbortSignal;
  /** Each columnist's state (jobs/voice-status.ts); absent where no columnist folders are read. */
  columnists?(): unknown[];
  /** A voice by name, for a job started for it (throws UNKNOWN_COLUMNIST with the known ones). */
  voice?(name: string): { name: string; minNewExamples: number };
  /** The host's training turn: who holds it (any process), voices queued here, whom this process waits for. */
  training?(): unknown;
}

/** The voice a request body names (`columnist`), checked; undefined when it names none. */
function voiceOf(d: DashboardDeps, b: Record<string, unknown>): { name: string; minNewExamples: number } | undefined {
  if (b.columnist === undefined) return undefined;
  if (typeof b.columnist !== 'string' || !b.columnist.trim()) {
    throw new MorrisError('BAD_INPUT', '"columnist" must be a columnist\'s name.', { hint: 'Send e.g. {"columnist": "morris"}, or leave it out for the default columnist.' });
  }
  if (!d.voice) throw new MorrisError('UNKNOWN_COLUMNIST', `No columnist named "${b.columnist}" in this process.`);
  return d.voice(b.columnist);
}

function intParam(v: string | null | undefined, dflt: number, min: number, max: number): number {
  if (v == null || v === '') return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new MorrisError('BAD_INPUT', `Expected a whole number from ${min} to ${max}, got "${v}".`);
  return n;
}

export function dataSummary(store: Store) {
  const datasets = recentDatasets(store, 20);
  return {
    articlesOk: okArticleCount(store),
    articles: articleCounts(store),
    lastScrapes: scrapesBySource(store),
    datasets: datasets.map((d) => ({ ...d, stats: safeJson(d.stats) })),
  };
}

function safeJson(s: string | null): unknown {
  if (s == null) return null;
  try {
    return JSON.parse(s);
  } catch {
    return s;
  }
}

/** Loss curve points for an adapter: its training run's metrics (train and eval). */
export function lossCurve(store: Store, adapterId: string) {
  const a = getAdapter(store, adapterId);
  const runIds = [adapterId, a.metrics.runId, a.metrics.run_id].filter((x): x is string => typeof x === 'string');
  const rows = lossPoints(store, runIds);
  return {
    train: rows.filter((r) => r.kind === 'train').map((r) => ({ step: r.step, loss: r.loss })),
    eval: rows.filter((r) => r.kind === 'eval').map((r) => ({ step: r.step, loss: r.loss })),
  };
}

/** HTTP statuses for the core's refusals. */
const REFUSAL_STATUS: Record<RefusalReason, number> = { usage: 400, too_long: 400, blocked: 400, rate_limited: 429 };

/**
 * POST /api/generate: checks through the core (refusals are the one JSON error shape), then
 * streams the core's updates as server-sent events: `request`, `notice` (queue position,
 * "writing…"), `text` (each new piece), then `done` (the article as it leaves Morris, with its
 * attribution line) or `failed`.
 */
async function playground(d: DashboardDeps, { res, body, principal }: Pick<RequestContext, 'res' | 'body' | 'principal'>): Promise<typeof RESPONDED> {
  const b = await body();
  const topic = typeof b.topic === 'string' ? b.topic : '';
  const maxNewTokens = intParam(b.maxNewTokens == null ? null : String(b.maxNewTokens), d.defaultMaxNewTokens, 1, PLAYGROUND_MAX_NEW_TOKENS);
  const temperature = b.temperature == null ? undefined : Number(b.temperature);
  if (temperature !== undefined && !(temperature >= 0 && temperature <= 5)) throw new MorrisError('BAD_INPUT', 'temperature must be from 0 to 5.');
  if (!topic.trim()) throw new MorrisError('BAD_INPUT', 'Give a topic.', { hint: 'Send e.g. {"topic": "5G monetisation"}.' });
  // Each browser session (or the bearer token, or the local operator) is one user of the core.
  const checked = await d.core.precheck({
    requester: { platform: 'web', userId: principal ? `${principal.kind}:${principal.id}` : 'anonymous' },
    text: topic,
    options: { maxNewTokens, ...(temperature !== undefined ? { temperature } : {}) },
  });
  if (!checked.ok) {
    throw new MorrisError(checked.reason === 'rate_limited' ? 'RATE_LIMITED' : 'BAD_INPUT', checked.message, {
      status: REFUSAL_STATUS[checked.reason],
      hint: checked.reason === 'rate_limited' ? 'Wait a minute; the playground has its own per-session limit.' : 'Change the topic and try again.',
    });
  }
  const prepared = d.core.accept(checked.accepted);
  const abort = new AbortController();
  // The client going away cancels its generation (not the server shutting down: that waits).
  res.on('close', () => {
    if (!res.writableFinished) abort.abort();
  });
  const send = startSse(res);
  send('request', { id: prepared.request.id });
  // A request waiting in the queue says nothing for a while: keep idle timeouts from closing it.
  const beat = setInterval(() => {
    if (!res.writableEnded) res.write(': keep-alive\n\n');
  }, SSE_HEARTBEAT_MS);
  let sent = 0;
  try {
    await d.track(
      (async () => {
        for await (const u of prepared.run(abort.signal) as AsyncGenerator<ReplyUpdate>) {
          if (u.kind === 'notice') send('notice', { text: u.text });
          else if (u.kind === 'partial') {
            send('text', { text: u.text.slice(sent) });
            sent = u.text.length;
          } else if (u.kind === 'final') send('done', { text: u.text, cut: u.cut, reason: u.reason, id: u.generationId, ...u.lineage });
          else send('failed', { text: u.text, id: u.generationId });
        }
      })(),
    );
  } finally {
    clearInterval(beat);
  }
  res.end();
  return RESPONDED;
}

export function apiRoutes(d: DashboardDeps): Route[] {
  const actor = 'web:admin';
  return [
    {
      method: 'GET',
      path: '/api/status',
      handler: async () => {
        const active = d.registry.active();
        return {
          version: d.version,
          engine: await d.engineStatus(),
          generator: await d.generator.info(),
          // The default columnist's (what a request naming no voice gets); every voice's is in `columnists`.
          activeAdapter: active ? { id: active.id, promoted_at: active.promoted_at, dataset_id: active.dataset_id } : null,
          columnists: d.columnists?.() ?? [],
          training: d.training?.() ?? null,
          bots: d.bots(),
          jobs: {
            running: listRuns(d.store, { status: 'running', limit: 20 }),
            scheduled: d.scheduler?.jobs() ?? [],
          },
        };
      },
    },
    { method: 'GET', path: '/api/data', handler: () => dataSummary(d.store) },
    { method: 'GET', path: '/api/columnists', handler: () => ({ columnists: d.columnists?.() ?? [] }) },
    {
      method: 'GET',
      path: '/api/jobs',
      handler: ({ query }) => ({
        jobs: d.control.runner.jobNames(),
        runs: listRuns(d.store, {
          job: query.get('job') ?? undefined,
          status: (query.get('status') as JobStatus | null) ?? undefined,
          limit: intParam(query.get('limit'), 50, 1, 1000),
        }),
      }),
    },
    {
      method: 'GET',
      path: '/api/jobs/events',
      handler: ({ req, res }) => {
        const send = startSse(res);
        const onEvent = (e: RunnerEvent) => send(e.type, e);
        d.control.runner.events.on('event', onEvent);
        const beat = setInterval(() => {
          if (!res.writableEnded) res.write(': keep-alive\n\n'); // ended by shutdown, not yet closed
        }, SSE_HEARTBEAT_MS);
        const end = () => res.end();
        d.shutdown?.addEventListener('abort', end, { once: true });
        req.on('close', () => {
          clearInterval(beat);
          d.control.runner.events.off('event', onEvent);
          d.shutdown?.removeEventListener('abort', end);
        });
        send('hello', { running: listRuns(d.store, { status: 'running', limit: 20 }) });
        return RESPONDED;
      },
    },
    {
      method: 'GET',
      path: '/api/jobs/:id',
      handler: ({ params, query }) => {
        const id = intParam(params.id, 0, 1, Number.MAX_SAFE_INTEGER);
        return { run: getRun(d.store, id), logs: getLogs(d.store, id, { afterId: intParam(query.get('after'), 0, 0, Number.MAX_SAFE_INTEGER) }) };
      },
    },
    {
      method: 'POST',
      path: '/api/jobs/:name/run',
      handler: async ({ params, body }) => {
        const b = await body();
        const chain = b.chain === undefined ? undefined : Boolean(b.chain);
        // For a voice: its whole chain runs for it, with its own retrain threshold.
        const voice = voiceOf(d, b);
        const s = await d.control.start(params.name!, { trigger: actor, input: b.input, chain, ...(voice ? { columnist: voice.name, minNewExamples: voice.minNewExamples } : {}) });
        return { started: s.started, run: s.run };
      },
    },
    {
      method: 'POST',
      path: '/api/jobs/:id/cancel',
      handler: ({ params }) => ({ run: d.control.cancel(intParam(params.id, 0, 1, Number.MAX_SAFE_INTEGER)) }),
    },
    {
      method: 'GET',
      path: '/api/adapters',
      handler: () => ({
        active: d.registry.active()?.id ?? null,
        adapters: d.registry.list().map((a) => ({ ...a, valLoss: adapterValLoss(a) ?? null })),
        history: adapterHistory(d.store, 20),
      }),
    },
    {
      method: 'GET',
      path: '/api/adapters/:id',
      handler: ({ params }) => ({ adapter: getAdapter(d.store, params.id!), curve: lossCurve(d.store, params.id!) }),
    },
    {
      method: 'POST',
      path: '/api/adapters/rollback',
      handler: async ({ body }) => {
        // Each voice has its own active adapter: the body names whose to roll back (default: the default columnist's).
        const voice = voiceOf(d, await body());
        const c = voice ? await d.registry.rollback(actor, 'rolled back', voice.name) : await d.registry.rollback(actor);
        return { previous: c.previous?.id ?? null, active: c.active?.id ?? null };
      },
    },
    {
      method: 'POST',
      path: '/api/adapters/:id/promote',
      handler: async ({ params }) => {
        const c = await d.registry.promote(params.id!, actor, 'promoted by an admin');
        return { previous: c.previous?.id ?? null, active: c.active?.id ?? null };
      },
    },
    {
      method: 'POST',
      path: '/api/generate',
      handler: ({ res, body, principal }) => playground(d, { res, body, principal }),
    },
  ];
}
