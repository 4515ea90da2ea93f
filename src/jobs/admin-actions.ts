/**
 * The bots' admin commands (`AdminActions` port from src/bot/types.ts), answered by the job
 * control and the adapter registry. Every answer is a few plain-text lines.
 */
import type { AdminActions, AdminActor, TextGenerator } from '../bot/types.ts';
import { MorrisError } from '../errors.ts';
import type { JobControl } from './control.ts';
import { adapterValLoss, type AdapterRegistry, type AdapterRow } from './registry.ts';
import { listRuns, type JobRun } from '../store/job-runs.ts';
import type { Scheduler } from './scheduler.ts';

/** Lines in an adapters list; older ones are in the dashboard. */
export const ADMIN_LIST_LIMIT = 8;

function who(a: AdminActor): string {
  return `${a.platform}:${a.userId}`;
}

function runLine(r: JobRun): string {
  const pct = r.status === 'running' ? ` ${Math.round(r.progress * 100)}%` : '';
  return `#${r.id} ${r.job} ${r.status}${pct}${r.message ? ` — ${r.message}` : ''}${r.error ? ` — ${r.error}` : ''}`;
}

function keyMetric(a: AdapterRow): string {
  const loss = adapterValLoss(a);
  return loss === undefined ? 'no validation loss' : `val loss ${loss.toFixed(4)}`;
}

export function createAdminActions(d: {
  control: JobControl;
  registry: AdapterRegistry;
  scheduler?: Scheduler;
  generator: TextGenerator;
}): AdminActions {
  const store = d.control.runner.store;
  const start = async (job: string, actor: AdminActor) => {
    const s = await d.control.start(job, { trigger: who(actor) });
    return s.started ? `Started ${job}: job #${s.run.id}.` : `Not started: ${s.run.message ?? `${job} is already running`}.`;
  };
  return {
    async status() {
      const info = await d.generator.info();
      const running = listRuns(store, { status: 'running', limit: 5 });
      const last = listRuns(store, { limit: 3 }).filter((r) => r.status !== 'running');
      const sched = d.scheduler?.jobs() ?? [];
      return [
        `Model: ${info.baseModel ?? 'not set'} — adapter ${info.adapterId ?? 'none (base model)'}${info.details ? ` — ${info.details}` : ''}`,
        `Running: ${running.length ? running.map(runLine).join('; ') : 'nothing'}`,
        `Recent: ${last.length ? last.map(runLine).join('; ') : 'no jobs yet'}`,
        `Schedule: ${sched.length ? sched.map((s) => `${s.job} "${s.expression}" next ${s.nextRun ?? '—'}`).join('; ') : 'off'}`,
      ].join('\n');
    },
    retrain: (actor) => start('retrain', actor),
    rescrape: (actor) => start('rescrape', actor),
    rebuild: (actor) => start('rebuild', actor),
    async adapters() {
      const all = d.registry.list();
      if (!all.length) return 'No adapters yet; the base model answers.';
      return all
        .slice(0, ADMIN_LIST_LIMIT)
        .map((a) => `${a.status === 'active' ? '* ' : '  '}${a.id} ${a.status}, ${keyMetric(a)}${a.reason ? ` — ${a.reason}` : ''}`)
        .join('\n');
    },
    async promote(actor, adapterId) {
      const c = await d.registry.promote(adapterId.trim(), who(actor), 'promoted by an admin');
      return `Adapter ${c.active?.id} is active now (was ${c.previous?.id ?? 'the base model'}).`;
    },
    async rollback(actor) {
      const c = await d.registry.rollback(who(actor));
      return `Rolled back from ${c.previous?.id}; ${c.active ? `adapter ${c.active.id}` : 'the base model'} answers now.`;
    },
    async cancel(_actor, jobId) {
      const id = Number(jobId.replace(/^#/, ''));
      if (!Number.isInteger(id) || id < 1) throw new MorrisError('BAD_INPUT', `"${jobId}" is not a job id (e.g. 12).`);
      let run: JobRun;
      try {
        run = d.control.cancel(id);
      } catch (e) {
        throw new MorrisError('NOT_FOUND', `No running job #${id}.`, { cause: e });
      }
      return `Cancelling job #${run.id} (${run.job}); a training stops at its next checkpoint.`;
    },
  };
}
