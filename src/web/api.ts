/**
 * The dashboard's JSON REST API (documented in docs/api.md). The pages use exactly these
 * endpoints; scripts can too. Anything that changes state needs the admin bearer token.
 */
import type { Store } from '../store/db.ts';
import { MorrisError } from '../errors.ts';
import type { TextGenerator } from '../bot/types.ts';
import { closeGeneration, newGenerationId, openGeneration } from '../bot/generation-log.ts';
import type { JobControl } from '../jobs/control.ts';
import type { Scheduler } from '../jobs/scheduler.ts';
import type { AdapterRegistry } from '../jobs/registry.ts';
import { adapterHistory, adapterValLoss, getAdapter } from '../jobs/registry.ts';
import { getLogs, getRun, listRuns, type JobStatus } from '../jobs/runs.ts';
import type { RunnerEvent } from '../jobs/runner.ts';
import { RESPONDED, startSse, type Route } from './router.ts';

/** Playground limits: the page is a demo, not a bulk endpoint. */
export const PLAYGROUND_MAX_TOPIC_CHARS = 300;
export const PLAYGROUND_MAX_NEW_TOKENS = 1024;
/** SSE comment lines keep proxies from closing a quiet job-events stream. */
export const SSE_HEARTBEAT_MS = 15_000;

export interface BotStatus {
  platform: string;
  connected: boolean;
  detail?: string;
}

export interface DashboardDeps {
  store: Store;
  control: JobControl;
  scheduler?: Scheduler;
  registry: AdapterRegistry;
  generator: TextGenerator;
  /** Model, device, loaded or not, queue length: whatever the generation service reports. */
  engineStatus(): Promise<Record<string, unknown>> | Record<string, unknown>;
  bots(): BotStatus[];
  /** Counts generations in flight so shutdown can wait for them. */
  track<T>(p: Promise<T>): Promise<T>;
  defaultMaxNewTokens: number;
  version: string;
  /** Aborted when the server shuts down: long-lived event streams end at once. */
  shutdown?: AbortSignal;
}

function intParam(v: string | null | undefined, dflt: number, min: number, max: number): number {
  if (v == null || v === '') return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new MorrisError('BAD_INPUT', `Expected a whole number from ${min} to ${max}, got "${v}".`);
  return n;
}

export function dataSummary(store: Store) {
  const articles = store
    .prepare(`SELECT source, status, COUNT(*) AS n, MAX(updated_at) AS last_updated FROM articles GROUP BY source, status ORDER BY source, status`)
    .all();
  const lastScrapes = store
    .prepare(`SELECT source, MAX(started_at) AS started_at, MAX(ended_at) AS ended_at, COUNT(*) AS runs FROM scrape_runs GROUP BY source`)
    .all();
  const datasets = store
    .prepare(`SELECT id, created_at, origin, train_count, val_count, stats FROM datasets ORDER BY created_at DESC, rowid DESC LIMIT 20`)
    .all() as { stats: string }[];
  const total = store.prepare(`SELECT COUNT(*) AS n FROM articles WHERE status = 'ok'`).get() as { n: number };
  return {
    articlesOk: total.n,
    articles,
    lastScrapes,
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
  const rows = store
    .prepare(
      `SELECT step, kind, loss, lr FROM train_metrics WHERE run_id IN (${runIds.map(() => '?').join(',')}) AND loss IS NOT NULL ORDER BY step, id`,
    )
    .all(...runIds) as { step: number; kind: 'train' | 'eval'; loss: number; lr: number | null }[];
  return {
    train: rows.filter((r) => r.kind === 'train').map((r) => ({ step: r.step, loss: r.loss })),
    eval: rows.filter((r) => r.kind === 'eval').map((r) => ({ step: r.step, loss: r.loss })),
  };
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
          activeAdapter: active ? { id: active.id, promoted_at: active.promoted_at, dataset_id: active.dataset_id } : null,
          bots: d.bots(),
          jobs: {
            running: listRuns(d.store, { status: 'running', limit: 20 }),
            scheduled: d.scheduler?.jobs() ?? [],
          },
        };
      },
    },
    { method: 'GET', path: '/api/data', handler: () => dataSummary(d.store) },
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
      admin: true,
      handler: async ({ params, body }) => {
        const b = await body();
        const chain = b.chain === undefined ? undefined : Boolean(b.chain);
        const s = await d.control.start(params.name!, { trigger: actor, input: b.input, chain });
        return { started: s.started, run: s.run };
      },
    },
    {
      method: 'POST',
      path: '/api/jobs/:id/cancel',
      admin: true,
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
      admin: true,
      handler: async () => {
        const c = await d.registry.rollback(actor);
        return { previous: c.previous?.id ?? null, active: c.active?.id ?? null };
      },
    },
    {
      method: 'POST',
      path: '/api/adapters/:id/promote',
      admin: true,
      handler: async ({ params }) => {
        const c = await d.registry.promote(params.id!, actor, 'promoted by an admin');
        return { previous: c.previous?.id ?? null, active: c.active?.id ?? null };
      },
    },
    {
      method: 'POST',
      path: '/api/generate',
      handler: async ({ res, body }) => {
        const b = await body();
        const topic = typeof b.topic === 'string' ? b.topic.trim() : '';
        if (!topic) throw new MorrisError('BAD_INPUT', 'Give a topic, e.g. {"topic": "5G monetisation"}.');
        if (topic.length > PLAYGROUND_MAX_TOPIC_CHARS) {
          throw new MorrisError('BAD_INPUT', `Topic is ${topic.length} characters; the limit is ${PLAYGROUND_MAX_TOPIC_CHARS}.`);
        }
        const maxNewTokens = intParam(b.maxNewTokens == null ? null : String(b.maxNewTokens), d.defaultMaxNewTokens, 1, PLAYGROUND_MAX_NEW_TOKENS);
        const temperature = b.temperature == null ? undefined : Number(b.temperature);
        if (temperature !== undefined && !(temperature >= 0 && temperature <= 5)) throw new MorrisError('BAD_INPUT', 'temperature must be from 0 to 5.');
        // Recorded like the bots' requests (who, topic, adapter, duration, outcome).
        const requestId = newGenerationId();
        openGeneration(d.store, { id: requestId, requester: { platform: 'web', userId: 'dashboard' }, topic });
        const t0 = performance.now();
        let ttft: number | null = null;
        const abort = new AbortController();
        // The client going away cancels its generation (not the server shutting down: that waits).
        res.on('close', () => {
          if (!res.writableFinished) abort.abort();
        });
        const send = startSse(res);
        send('request', { id: requestId });
        await d.track(
          (async () => {
            try {
              for await (const ev of d.generator.generate({ topic, maxNewTokens, temperature, requestId }, abort.signal)) {
                if (ev.type === 'text' && ttft === null) ttft = performance.now() - t0;
                if (ev.type === 'done') {
                  closeGeneration(d.store, requestId, {
                    outcome: ev.reason === 'cancelled' ? 'cancelled' : ev.cut ? 'cut' : 'ok',
                    durationMs: performance.now() - t0,
                    ttftMs: ttft,
                    nChars: ev.text.length,
                    baseModel: ev.baseModel,
                    adapterId: ev.adapterId,
                    datasetId: ev.datasetId,
                  });
                }
                send(ev.type, ev);
              }
            } catch (e) {
              closeGeneration(d.store, requestId, { outcome: 'failed', durationMs: performance.now() - t0, error: e instanceof Error ? e.message : String(e) });
              throw e;
            }
          })(),
        );
        res.end();
        return RESPONDED;
      },
    },
  ];
}
