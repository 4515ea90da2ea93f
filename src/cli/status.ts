/**
 * `morris status`: what answers now and every columnist's state (jobs/voice-status.ts, the same
 * view as /api/status and the dashboard), who holds the host's one training turn, and whether a
 * `morris serve` answers on this machine. Wiring and printing only.
 */
import type { Command } from 'commander';
import type { CliContext } from './context.ts';
import { listRuns } from '../store/job-runs.ts';
import { dataSummary } from '../web/api.ts';
import { activeAdapterFromStore } from '../model/serving/create.ts';
import { columnistStates, VOICE_STEPS, type ColumnistState, type LastRun } from '../jobs/voice-status.ts';
import { describeHolder, trainingLeaseHolder } from '../jobs/host-lease.ts';

/** The step names as a person reads them in the status lines. */
const STEP_LABEL: Record<(typeof VOICE_STEPS)[number], string> = { rescrape: 'scrape', rebuild: 'dataset', retrain: 'train', evaluate: 'evaluate', dpo: 'dpo' };

function lastLine(r: LastRun | null): string {
  return r ? `#${r.id} ${r.status} ${r.ended_at ?? r.started_at}` : 'never';
}

/** A voice's lines: its headline, its last runs, its pairs and schedule (or why its folder does not load). */
export function voiceLines(c: ColumnistState, dpoMinNewPairs: number): string[] {
  const head = `${c.name}${c.default ? ' (default)' : ''}${c.displayName && c.displayName !== c.name ? ` — ${c.displayName}` : ''}`;
  const problems = c.ok ? [] : [`    BROKEN (the scheduler skips it): ${c.problems.join('; ')}`];
  const schedule = c.schedule ? Object.entries(c.schedule).map(([job, cron]) => `${job} ${cron}`).join(', ') : 'none (its settings do not load)';
  const dpo = dpoMinNewPairs > 0 ? `dpo after ${dpoMinNewPairs} new pairs` : 'dpo off';
  return [
    `  ${head}: adapter ${c.activeAdapter?.id ?? 'none (base model)'}; ${c.articles} articles; dataset ${c.latestDataset ?? '—'}`,
    ...problems,
    `    last: ${VOICE_STEPS.map((s) => `${STEP_LABEL[s]} ${lastLine(c.last[s])}`).join('; ')}`,
    `    pairs: ${c.pairs.total} (${c.pairs.new} new since its last DPO); schedule: ${schedule}; ${dpo}`,
    ...(c.running.length ? [`    running: ${c.running.map((r) => `#${r.id} ${r.job} ${Math.round(r.progress * 100)}%`).join(', ')}`] : []),
  ];
}

export function register(program: Command, ctx: CliContext): void {
  program
    .command('status')
    .description("Show what answers now and each columnist's state: adapter, last runs, pairs, schedule, problems")
    .option('--json', 'JSON output')
    .action(async (o: { json?: boolean }) => {
      const c = ctx.config();
      const store = ctx.store();
      const serve = await serveHealth(c.HOST, c.PORT);
      const active = activeAdapterFromStore(store);
      const data = dataSummary(store);
      const running = listRuns(store, { status: 'running' });
      const recent = listRuns(store, { limit: 5 });
      const columnists = columnistStates(c, store);
      const holder = trainingLeaseHolder(store);
      const status = {
        baseModel: c.MORRIS_BASE_MODEL,
        backend: c.MORRIS_BACKEND,
        // The default columnist's; every voice's is in `columnists`.
        activeAdapter: active?.id ?? null,
        latestDataset: data.datasets[0] ?? null,
        articles: data.articlesOk,
        columnists,
        training: { holder },
        running: running.map((r) => ({ id: r.id, job: r.job, columnist: r.columnist, progress: r.progress, message: r.message })),
        recent: recent.map((r) => ({ id: r.id, job: r.job, columnist: r.columnist, status: r.status, ended_at: r.ended_at })),
        serve,
      };
      if (o.json) return console.log(JSON.stringify(status, null, 2));
      const platforms = serve ? Object.entries(serve.platforms).filter(([, v]) => v !== 'off') : [];
      const lines = [
        `Base model:     ${status.baseModel} (backend ${status.backend})`,
        `Serve:          ${serve ? `answering on port ${c.PORT}; bots: ${platforms.map(([k, v]) => `${k} ${v}`).join(', ') || 'none configured'}` : `not answering on port ${c.PORT}`}`,
        `Training:       ${holder ? `${describeHolder(holder)} holds the host's turn` : 'nothing trains on this host now'}`,
        `Running jobs:   ${running.length ? running.map((r) => `#${r.id} ${r.job}${r.columnist ? ` (${r.columnist})` : ''} ${Math.round(r.progress * 100)}%`).join(', ') : 'none'}`,
        `Recent jobs:    ${recent.map((r) => `#${r.id} ${r.job} ${r.status}`).join(', ') || 'none'}`,
        `Columnists:`,
        ...columnists.flatMap((v) => voiceLines(v, c.MORRIS_DPO_MIN_NEW_PAIRS)),
      ];
      console.log(lines.join('\n'));
    });
}

/** The running `morris serve`'s /healthz on this machine (platform states), or null. */
async function serveHealth(host: string, port: number): Promise<{ platforms: Record<string, string> } | null> {
  const h = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  try {
    const res = await fetch(`http://${h}:${port}/healthz`, { signal: AbortSignal.timeout(1500) });
    return res.ok ? ((await res.json()) as { platforms: Record<string, string> }) : null;
  } catch {
    return null; // nothing listening: serve is not running here
  }
}
