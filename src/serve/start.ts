/**
 * `morris serve`: one process with the bots that are configured, the scheduler and the dashboard.
 * This module wires; the parts live in their own modules. Shutdown (SIGTERM/SIGINT) stops taking
 * requests, lets generations in flight finish within MORRIS_SHUTDOWN_GRACE_S, asks a running
 * training to checkpoint, then closes the model and the database.
 */
import type { Config } from '../config.ts';
import { assertServeConfig } from '../config-check.ts';
import type { Store } from '../store/db.ts';
import { openServeStore } from '../store/health.ts';
import { childLog } from '../log.ts';
import { startBots, type RunningBots, type StartBotsOptions } from '../bot/index.ts';
import type { HttpLimits } from '../web/http-guard.ts';
import { generatorFromConfig } from './generator-adapters.ts';
import type { TextGenerator } from '../bot/types.ts';
import { activeAdapterFromStore, createGenerationService } from '../model/serving/create.ts';
import type { GenerationService } from '../model/serving/generation-service.ts';
import { startListener, type HttpListener } from '../web/server.ts';
import { isLoopbackHostName, type AccessPolicy } from '../web/auth.ts';
import { createAdminActions } from '../jobs/admin-actions.ts';
import type { JobControl } from '../jobs/control.ts';
import type { SourceSpec } from '../jobs/handlers.ts';
import type { Style } from '../pipeline/dataset/enhance.ts';
import type { AdapterRegistry } from '../jobs/registry.ts';
import type { JobRunner } from '../jobs/runner.ts';
import { recoverCrashedRuns, waitForPidExit } from '../store/job-runs.ts';
import { recoverCrashedScrapes } from '../store/scrape-runs.ts';
import { STOP_GRACE_MS } from '../jobs/fork-worker.ts';
import { startScheduler, type Scheduler } from '../jobs/scheduler.ts';
import { voiceSchedules, withDefaultVoice } from '../jobs/voice-schedules.ts';
import { columnistStates } from '../jobs/voice-status.ts';
import { trainingLeaseHolder } from '../jobs/host-lease.ts';
import { buildJobSystem } from '../jobs/system.ts';
import { findRetrainToResume, SHUTDOWN_REASON } from '../jobs/resume.ts';
import { DEFAULT_COLUMNIST_NAME } from '../paths.ts';
import { resolveColumnist } from '../columnists/folder.ts';

const log = childLog('serve');

/** How often the serve process checks the store for an adapter promoted by another process. */
export const ADAPTER_WATCH_MS = 2000;

/**
 * Follows the store's active adapter: a promotion or rollback made by another process (the CLI,
 * a second serve) reaches this process's generation service within ADAPTER_WATCH_MS.
 */
function watchActiveAdapter(store: Store, service: GenerationService): NodeJS.Timeout {
  let failedFor: string | null | undefined;
  const t = setInterval(() => {
    if (!store.open) return;
    const want = activeAdapterFromStore(store);
    const id = want?.id ?? null;
    if (id === service.status().adapterId || id === failedFor) return;
    service.setAdapter(want?.dir ?? null, id, want?.datasetId ?? null).then(
      () => log.info({ adapterId: id }, 'switched to the adapter promoted in the store'),
      (e) => {
        failedFor = id;
        log.error({ err: e, adapterId: id }, 'cannot switch to the adapter the store names as active');
      },
    );
  }, ADAPTER_WATCH_MS);
  t.unref();
  return t;
}

export interface ServeOptions {
  config: Config;
  /** Overrides config PORT/HOST (tests use port 0 on 127.0.0.1). */
  port?: number;
  host?: string;
  /** Sources the rescrape job crawls; default from MORRIS_SOURCES. */
  sources?: SourceSpec[];
  /** Training settings on top of MORRIS_TRAIN_CONFIG (tests: a few steps). */
  trainOverrides?: Record<string, unknown>;
  /** Style guide for dataset builds (default: the default columnist's folder). */
  style?: Style;
  /** Start Slack/Discord when configured (default true). */
  bots?: boolean;
  /** Overrides for the bots (tests shorten retry backoff). */
  botOverrides?: StartBotsOptions['overrides'];
  /** Overrides MORRIS_DASHBOARD_PORT (tests: 0 for a separate dashboard listener). */
  dashboardPort?: number;
  /** HTTP limits (tests shorten timeouts). */
  httpLimits?: Partial<HttpLimits>;
  version?: string;
}

export interface ServeHandle {
  /** Where the dashboard answers (the one port, or its own listener). */
  url: string;
  /** Where Slack's events and /healthz answer (the same as `url` with one listener). */
  publicUrl: string;
  bots: RunningBots;
  store: Store;
  runner: JobRunner;
  control: JobControl;
  scheduler: Scheduler;
  registry: AdapterRegistry;
  service: GenerationService;
  generator: TextGenerator;
  /** Runs started at start-up to resume a training a crash or shutdown interrupted. */
  resumed: Promise<unknown> | null;
  stop(why?: string): Promise<void>;
}

export async function startServe(opts: ServeOptions): Promise<ServeHandle> {
  const { config } = opts;
  // Before anything starts: a bad HOST, source or training file stops serve here, naming the key.
  await assertServeConfig(config, { host: opts.host });
  // quick_check first (a malformed file stops here with the way back), then the daily backups.
  const store = openServeStore(config);
  const crashed = recoverCrashedRuns(store);
  for (const r of crashed) log.warn({ runId: r.id, job: r.job }, 'marked a run left running by an earlier process as crashed');
  for (const r of recoverCrashedScrapes(store)) log.warn({ scrapeRunId: r.id, source: r.source, pid: r.pid }, 'closed a scrape run left open by a process that died as crashed');

  const service = createGenerationService(config, { adapter: activeAdapterFromStore(store) });
  const generator = generatorFromConfig(config, { service, store });
  const { registry, runner, control, spec } = buildJobSystem({
    config,
    store,
    // The service's own adapter is the default columnist's; other voices' requests name theirs.
    onActiveChange: async (active, columnist) => {
      if (columnist === DEFAULT_COLUMNIST_NAME) await service.setAdapter(active?.path ?? null, active?.id ?? null, active?.dataset_id ?? null);
    },
    sources: opts.sources,
    trainOverrides: opts.trainOverrides,
    style: opts.style,
    command: 'morris serve',
  });
  // Every other columnist's chain on its own schedule (the default one's is MORRIS_CRON_*).
  const scheduler = startScheduler(runner, { ...withDefaultVoice(spec, config), voices: voiceSchedules(config) });

  // A voice named by an admin command or a dashboard button: its chain, with its own retrain threshold.
  const voice = (name: string) => {
    const c = resolveColumnist(name, config);
    return { name: c.name, minNewExamples: c.settings.retrainMinNewExamples };
  };
  const columnists = () => columnistStates(config, store, scheduler.jobs());
  // Whoever types `/morris-admin retrain` and whoever clicks the dashboard reach the same control.
  const admin = createAdminActions({ control, registry, scheduler, generator, voice, columnists });
  const inFlight = new Set<Promise<unknown>>();
  const shutdown = new AbortController();
  // Each platform connects (and retries) in the background: the port opens at once.
  const bots: RunningBots = startBots({ config, store, generator, admin, platforms: opts.bots ?? true, overrides: opts.botOverrides });
  const policy: AccessPolicy = {
    adminToken: config.MORRIS_ADMIN_TOKEN,
    sessionHours: config.MORRIS_SESSION_HOURS,
    secureCookies: config.MORRIS_PUBLIC_URL?.startsWith('https:') ?? false,
  };
  const platformStates = () => Object.fromEntries(Object.entries(bots.platforms()).map(([k, v]) => [k, v.state]));
  const common = {
    policy,
    publicUrl: config.MORRIS_PUBLIC_URL,
    limits: { maxConnectionsPerAddress: config.MORRIS_HTTP_MAX_CONNECTIONS_PER_IP, ...opts.httpLimits },
    slackHandler: bots.slackHttpHandler,
    health: () => ({ status: 'ok' as const, platforms: platformStates() }),
  };
  const deps = {
    store,
    control,
    scheduler,
    registry,
    generator,
    core: bots.core,
    engineStatus: () => ({ ...service.status(), backend: config.MORRIS_BACKEND, configuredDevice: config.MORRIS_DEVICE, configuredBaseModel: config.MORRIS_BASE_MODEL }),
    bots: () => Object.entries(bots.platforms()).filter(([, v]) => v.state !== 'off').map(([platform, v]) => ({ platform, ...v })),
    track: <T>(p: Promise<T>) => {
      inFlight.add(p);
      return p.finally(() => inFlight.delete(p));
    },
    defaultMaxNewTokens: config.MORRIS_MAX_NEW_TOKENS,
    columnists,
    voice,
    training: () => ({ holder: trainingLeaseHolder(store), queued: spec.trainingQueue?.waiting() ?? [], waitingFor: spec.trainingQueue?.blockedBy() ?? null }),
    version: opts.version ?? 'dev',
    shutdown: shutdown.signal,
  };
  const dashboardPort = opts.dashboardPort ?? config.MORRIS_DASHBOARD_PORT;
  const listeners: HttpListener[] = [];
  try {
    const host = opts.host ?? config.HOST;
    const port = opts.port ?? config.PORT;
    if (dashboardPort === undefined) {
      listeners.push(await startListener(deps, { ...common, host, port, role: 'all' }));
    } else {
      // Slack's events and the health check on the public port; the dashboard on its own.
      listeners.push(await startListener(null, { ...common, host, port, role: 'public' }));
      listeners.push(
        await startListener(deps, { ...common, host: config.MORRIS_DASHBOARD_HOST, port: dashboardPort, role: 'dashboard' }, { host: 'MORRIS_DASHBOARD_HOST', port: 'MORRIS_DASHBOARD_PORT' }),
      );
    }
  } catch (e) {
    // A port in use ends `morris serve`: undo what started, or the scheduler's timers and the
    // bots' sockets would keep a half-started process alive.
    await Promise.all(listeners.map((l) => l.close(0)));
    await scheduler.stop();
    await bots.stop();
    await runner.shutdown(0);
    await service.close();
    store.close();
    throw e;
  }
  const dashboard = listeners[listeners.length - 1]!;
  const dashboardHost = dashboard.role === 'all' ? (opts.host ?? config.HOST) : config.MORRIS_DASHBOARD_HOST;
  if (!config.MORRIS_ADMIN_TOKEN) {
    log.warn(
      { dashboard: dashboard.bound },
      isLoopbackHostName(dashboardHost)
        ? 'MORRIS_ADMIN_TOKEN is not set: the dashboard answers only on this machine'
        : 'MORRIS_ADMIN_TOKEN is not set: the dashboard answers only to clients on this machine, though the port is reachable from others; set MORRIS_ADMIN_TOKEN to sign in from elsewhere',
    );
  }

  const adapterWatch = watchActiveAdapter(store, service);

  // A training that a crash (or the last shutdown) interrupted continues from its checkpoint.
  const toResume = findRetrainToResume(store);
  let resumed: Promise<unknown> | null = null;
  if (toResume) {
    const { run } = toResume;
    log.info({ runId: run.id, datasetId: toResume.input.datasetId }, 'resuming an interrupted training from its checkpoint');
    resumed = (async () => {
      // After a kill -9 the old worker may still be writing its last checkpoint: let it finish.
      if (!(await waitForPidExit(run.child_pid, STOP_GRACE_MS, shutdown.signal)) && !shutdown.signal.aborted) {
        log.warn({ runId: run.id, pid: run.child_pid }, 'the interrupted training\'s worker is still alive; resuming anyway');
      }
      if (shutdown.signal.aborted) return;
      const s = await control.start('retrain', { trigger: `resume:#${run.id}`, input: toResume.input });
      await s.finished;
    })().catch((e) => log.error({ err: e }, 'resuming the training failed'));
  }

  log.info(
    {
      dashboard: dashboard.url,
      listening: listeners.map((l) => `${l.bound} (${l.role})`),
      bots: Object.entries(bots.platforms()).filter(([, v]) => v.state !== 'off').map(([k]) => k),
      schedules: scheduler.jobs(),
      activeAdapter: registry.active()?.id ?? null,
      backend: config.MORRIS_BACKEND,
    },
    'morris serve started',
  );

  let stopping: Promise<void> | undefined;
  const stop = (why = 'stop requested') =>
    (stopping ??= (async () => {
      const graceMs = config.MORRIS_SHUTDOWN_GRACE_S * 1000;
      log.info({ why, graceMs, inFlight: inFlight.size }, 'shutting down: no new requests; waiting for generations in flight');
      shutdown.abort();
      // A chain waiting for another process's training gives up its place.
      spec.trainingQueue?.close();
      await scheduler.stop();
      // No new connections from here; open ones (streaming generations) may finish.
      const webClosed = Promise.all(listeners.map((l) => l.close(graceMs)));
      await Promise.all([
        webClosed,
        bots.stop(),
        Promise.race([Promise.allSettled([...inFlight]), new Promise((r) => setTimeout(r, graceMs).unref())]),
        runner.shutdown(graceMs, SHUTDOWN_REASON),
      ]);
      await scheduler.settled();
      await resumed;
      clearInterval(adapterWatch);
      await service.close();
      store.close();
      log.info('morris serve stopped');
    })());

  return { url: dashboard.url, publicUrl: listeners[0]!.url, bots, store, runner, control, scheduler, registry, service, generator, resumed, stop };
}
