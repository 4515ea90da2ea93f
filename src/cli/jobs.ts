import type { Command } from 'commander';
import type { CliContext } from './context.ts';
import { COLUMNIST_FLAG, COLUMNIST_FLAG_HELP, numberOption } from './options.ts';
import { resolveColumnist } from '../columnists/folder.ts';
import { buildJobSystem } from '../jobs/system.ts';
import { getLogs, getRun, listRuns, type JobRun, type JobStatus } from '../store/job-runs.ts';
import { findAdapter } from '../store/adapters.ts';
import type { RunnerEvent } from '../jobs/runner.ts';
import { MorrisError } from '../errors.ts';

function runRow(r: JobRun): string {
  const pct = `${Math.round(r.progress * 100)}%`.padStart(4);
  const note = r.error ?? r.message ?? '';
  return `#${String(r.id).padEnd(5)} ${r.job.padEnd(9)} ${r.status.padEnd(9)} ${pct}  ${r.started_at}  ${(r.ended_at ?? '').padEnd(24)} ${r.trigger}${note ? `  — ${note}` : ''}`;
}

function parseId(v: string): number {
  const n = Number(v.replace(/^#/, ''));
  if (!Number.isInteger(n) || n < 1) throw new MorrisError('BAD_INPUT', `"${v}" is not a job run id.`);
  return n;
}

export function register(program: Command, ctx: CliContext): void {
  const jobs = program.command('jobs').description('Scheduled jobs: list, run, cancel, history');

  jobs
    .command('list')
    .description("Jobs, a columnist's schedules (its columnist.json over config) and what is running now")
    .option(COLUMNIST_FLAG, COLUMNIST_FLAG_HELP)
    .action((o: { columnist?: string }) => {
      const c = ctx.config();
      const voice = resolveColumnist(o.columnist, c);
      const schedule: Record<string, string> = voice.settings.schedule;
      console.log(`Schedules of ${voice.name} (${c.MORRIS_CRON_TZ}, chain ${c.MORRIS_CHAIN ? 'on' : 'off'}, retrain needs ≥ ${voice.settings.retrainMinNewExamples} new examples):`);
      for (const [job, cron] of Object.entries(schedule)) console.log(`  ${job.padEnd(9)} ${cron}`);
      console.log('  evaluate  after every retrain (the promotion gate)');
      console.log(`  dpo       ${c.MORRIS_DPO_MIN_NEW_PAIRS > 0 ? `after a retrain when readers made pairs on ${voice.name}'s articles, and on its own after ${c.MORRIS_DPO_MIN_NEW_PAIRS} new ones (then evaluate)` : 'off (MORRIS_DPO_MIN_NEW_PAIRS=0)'}`);
      const running = listRuns(ctx.store(), { status: 'running' });
      console.log(running.length ? `Running:\n${running.map((r) => '  ' + runRow(r)).join('\n')}` : 'Running: nothing');
    });

  jobs
    .command('run <name>')
    .description("Run a job now in this process: rescrape, rebuild, retrain (then evaluate), evaluate --adapter ID, dpo [--adapter ID|none] (readers' pairs, then evaluate)")
    .option('--no-chain', 'run only this job, not the rest of the chain')
    .option('--dataset <id>', 'retrain: dataset version (default: latest)')
    .option('--adapter <id>', 'evaluate: the adapter to evaluate; dpo: the reference (default: the active adapter; none: the base model)')
    .option(COLUMNIST_FLAG, COLUMNIST_FLAG_HELP)
    .action(async (name: string, o: { chain: boolean; dataset?: string; adapter?: string; columnist?: string }) => {
      // Evaluating a given adapter is its own voice's business (its run, its status), whatever the flag's default.
      const adapterVoice = name === 'evaluate' && o.adapter && o.columnist === undefined ? findAdapter(ctx.store(), o.adapter)?.columnist : undefined;
      const voice = resolveColumnist(o.columnist ?? adapterVoice, ctx.config());
      const sys = buildJobSystem({ config: ctx.config(), store: ctx.store(), command: `morris jobs run ${name}` });
      const input =
        name === 'retrain' && o.dataset ? { datasetId: o.dataset }
        : name === 'evaluate' ? { adapterId: o.adapter }
        : name === 'dpo' && o.adapter ? { referenceAdapterId: o.adapter === 'none' ? null : o.adapter }
        : undefined;
      sys.runner.events.on('event', (e: RunnerEvent) => {
        if (e.type === 'log') process.stderr.write(`[${e.job} #${e.runId}] ${e.line}\n`);
        else if (e.type === 'progress' && e.message) process.stderr.write(`[${e.job} #${e.runId}] ${Math.round(e.progress * 100)}% ${e.message}\n`);
      });
      const onSig = () => {
        sys.spec.trainingQueue?.close();
        void sys.runner.shutdown(60_000, 'interrupted from the terminal');
      };
      process.once('SIGINT', onSig);
      process.once('SIGTERM', onSig);
      const started = await sys.control.start(name, { trigger: 'cli', input, chain: o.chain, ...(o.columnist === undefined && adapterVoice === undefined ? {} : { columnist: voice.name }), minNewExamples: voice.settings.retrainMinNewExamples });
      if (!started.started) {
        console.log(`Not started: ${started.run.message}`);
        process.exitCode = 3;
        return;
      }
      const runs = await started.finished;
      for (const r of runs) console.log(runRow(r));
      if (runs.some((r) => r.status === 'failed' || r.status === 'cancelled')) process.exitCode = 1;
    });

  jobs
    .command('cancel <id>')
    .description('Cancel a running job (in this or the serve process); a training checkpoints first')
    .action((id: string) => {
      const sys = buildJobSystem({ config: ctx.config(), store: ctx.store() });
      const r = sys.control.cancel(parseId(id));
      console.log(`Cancel requested for #${r.id} (${r.job}); its owner stops it within a few seconds.`);
    });

  jobs
    .command('history')
    .description('Past and running job runs, newest first')
    .option('--job <name>', 'only this job')
    .option(COLUMNIST_FLAG, 'only runs for this voice (default: every run)')
    .option('--status <status>', 'only runs with this status')
    .option('--limit <n>', 'how many', numberOption('--limit', 1, 10_000, true), 30)
    .option('--json', 'JSON output')
    .action((o: { job?: string; status?: JobStatus; limit: number; json?: boolean; columnist?: string }) => {
      const columnist = o.columnist === undefined ? undefined : resolveColumnist(o.columnist, ctx.config()).name;
      const runs = listRuns(ctx.store(), { job: o.job, status: o.status, limit: o.limit, columnist });
      if (o.json) console.log(JSON.stringify(runs, null, 2));
      else console.log(runs.length ? runs.map(runRow).join('\n') : 'No job runs yet.');
    });

  jobs
    .command('show <id>')
    .description('One run with its log')
    .action((id: string) => {
      const r = getRun(ctx.store(), parseId(id));
      console.log(runRow(r));
      if (r.result) console.log(`result: ${JSON.stringify(r.result)}`);
      for (const l of getLogs(ctx.store(), r.id)) console.log(`${l.at} ${l.level.padEnd(5)} ${l.line}`);
    });
}
