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
import type { ColumnistState } from './voice-status.ts';

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

/** One voice in `status`: its adapter, last training, readers' pairs, or why its folder does not load. */
function voiceLine(c: ColumnistState): string {
  if (!c.ok) return `Voice ${c.name}: does not load (skipped by the scheduler): ${c.problems.join('; ').replace(/\s*\n\s*/g, ' ')}`;
  const train = c.last.retrain ? `last train #${c.last.retrain.id} ${c.last.retrain.status}` : 'never trained';
  return `Voice ${c.name}${c.default ? ' (default)' : ''}: adapter ${c.activeAdapter?.id ?? 'none'}, ${train}, ${c.pairs.total} reader pairs (${c.pairs.new} new)`;
}

/** A voice as the admin commands need it: its name (checked) and its retrain threshold. */
export type VoiceLookup = (name: string) => { name: string; minNewExamples: number };

export function createAdminActions(d: {
  control: JobControl;
  registry: AdapterRegistry;
  scheduler?: Scheduler;
  generator: TextGenerator;
  /** Resolves a columnist named in a command (throws UNKNOWN_COLUMNIST); absent → only the default voice. */
  voice?: VoiceLookup;
  /** Every voice's state (jobs/voice-status.ts), one line each in `status`. */
  columnists?: () => ColumnistState[];
}): AdminActions {
  const store = d.control.runner.store;
  const voiceOf = (name: string) => {
    if (!d.voice) throw new MorrisError('UNKNOWN_COLUMNIST', `No columnist named "${name}" in this process.`);
    return d.voice(name);
  };
  const start = async (job: string, actor: AdminActor, columnist?: string) => {
    const v = columnist === undefined ? undefined : voiceOf(columnist);
    const s = await d.control.start(job, { trigger: who(actor), ...(v ? { columnist: v.name, minNewExamples: v.minNewExamples } : {}) });
    const what = v ? `${job} for ${v.name}` : job;
    return s.started ? `Started ${what}: job #${s.run.id}.` : `Not started: ${s.run.message ?? `${what} is already running`}.`;
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
        `Schedule: ${sched.length ? sched.map((s) => `${s.job}${s.columnist ? ` (${s.columnist})` : ''} "${s.expression}" next ${s.nextRun ?? '—'}`).join('; ') : 'off'}`,
        ...(d.columnists?.() ?? []).map(voiceLine),
      ].join('\n');
    },
    retrain: (actor, columnist) => start('retrain', actor, columnist),
    rescrape: (actor, columnist) => start('rescrape', actor, columnist),
    rebuild: (actor, columnist) => start('rebuild', actor, columnist),
    async adapters(_actor, columnist) {
      const all = d.registry.list(columnist === undefined ? undefined : voiceOf(columnist).name);
      if (!all.length) return `No adapters yet${columnist ? ` for ${columnist}` : ''}; the base model answers.`;
      return all
        .slice(0, ADMIN_LIST_LIMIT)
        .map((a) => `${a.status === 'active' ? '* ' : '  '}${a.id} ${a.status}, ${keyMetric(a)}${a.reason ? ` — ${a.reason}` : ''}`)
        .join('\n');
    },
    async promote(actor, adapterId) {
      const c = await d.registry.promote(adapterId.trim(), who(actor), 'promoted by an admin');
      return `Adapter ${c.active?.id} is active now (was ${c.previous?.id ?? 'the base model'}).`;
    },
    async rollback(actor, columnist) {
      const c = await d.registry.rollback(who(actor), 'rolled back', columnist === undefined ? undefined : voiceOf(columnist).name);
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
