import type { Command } from 'commander';
import type { CliContext } from './context.ts';
import { registerTransfer } from './adapters-transfer.ts';
import { AdapterRegistry, adapterHistory, adapterValLoss, getAdapter, type AdapterRow } from '../jobs/registry.ts';
import { listRuns } from '../store/job-runs.ts';
import { dataSummary } from '../web/api.ts';
import { activeAdapterFromStore } from '../model/serving/create.ts';
import { COLUMNIST_FLAG, COLUMNIST_FLAG_HELP } from './options.ts';
import { DEFAULT_COLUMNIST_NAME, resolveColumnist } from '../columnists/folder.ts';
import { MorrisError } from '../errors.ts';

function lossOf(a: AdapterRow): string {
  return adapterValLoss(a)?.toFixed(4) ?? '—';
}

export function register(program: Command, ctx: CliContext): void {
  const adapters = program.command('adapters').description('List, show, promote and roll back adapters; import and export PEFT adapters');
  registerTransfer(adapters, ctx);
  const actor = 'cli';

  /** The voice a command is about: --columnist, else the default one (unknown names list the known ones). */
  const voiceOf = (o: { columnist?: string }) => resolveColumnist(o.columnist, ctx.config()).name;

  adapters
    .command('list')
    .description("A columnist's adapters, newest first (* = active)")
    .option(COLUMNIST_FLAG, COLUMNIST_FLAG_HELP)
    .option('--json', 'JSON output')
    .action((o: { json?: boolean; columnist?: string }) => {
      const all = new AdapterRegistry(ctx.store()).list(voiceOf(o));
      if (o.json) return console.log(JSON.stringify(all, null, 2));
      if (!all.length) return console.log('No adapters yet; the base model answers.');
      for (const a of all) {
        console.log(`${a.status === 'active' ? '*' : ' '} ${a.id.padEnd(26)} ${a.status.padEnd(9)} val loss ${lossOf(a).padEnd(8)} dataset ${a.dataset_id ?? '—'}  ${a.reason ?? ''}`);
      }
    });

  adapters
    .command('show <id>')
    .description('One adapter: metrics, evaluation, where it lives')
    .action((id: string) => console.log(JSON.stringify(getAdapter(ctx.store(), id), null, 2)));

  adapters
    .command('promote <id>')
    .description("Make an adapter its columnist's active one (a running `morris serve` switches to it within seconds)")
    .option(COLUMNIST_FLAG, 'refuse unless the adapter is this voice\'s')
    .action(async (id: string, o: { columnist?: string }) => {
      const registry = new AdapterRegistry(ctx.store());
      const owner = getAdapter(ctx.store(), id).columnist;
      if (o.columnist !== undefined && voiceOf(o) !== owner) {
        throw new MorrisError('BAD_INPUT', `Adapter ${id} belongs to ${owner}, not ${o.columnist}.`, { hint: `An adapter answers only for the voice it was trained on: \`morris adapters promote ${id} --columnist ${owner}\`.` });
      }
      const c = await registry.promote(id, actor, 'promoted from the CLI');
      console.log(`Active${owner === DEFAULT_COLUMNIST_NAME ? '' : ` for ${owner}`}: ${c.active?.id} (was ${c.previous?.id ?? 'the base model'}).`);
    });

  adapters
    .command('rollback')
    .description("Reactivate what was active for a columnist before its current adapter (possibly the base model)")
    .option(COLUMNIST_FLAG, COLUMNIST_FLAG_HELP)
    .action(async (o: { columnist?: string }) => {
      const c = await new AdapterRegistry(ctx.store()).rollback(actor, 'rolled back', voiceOf(o));
      console.log(`Rolled back from ${c.previous?.id}; now ${c.active?.id ?? 'the base model'} answers.`);
    });

  adapters
    .command('history')
    .description("A columnist's promotions and rollbacks, newest first")
    .option(COLUMNIST_FLAG, COLUMNIST_FLAG_HELP)
    .action((o: { columnist?: string }) => {
      for (const e of adapterHistory(ctx.store(), 50, voiceOf(o))) console.log(`${e.at} ${e.action.padEnd(8)} ${e.adapter_id ?? 'base model'} (was ${e.previous_id ?? 'base model'}) by ${e.actor}${e.reason ? ` — ${e.reason}` : ''}`);
    });

  program
    .command('status')
    .description('Show what answers now: base model, adapter, dataset, jobs')
    .option('--json', 'JSON output')
    .action(async (o: { json?: boolean }) => {
      const c = ctx.config();
      const store = ctx.store();
      const serve = await serveHealth(c.HOST, c.PORT);
      const active = activeAdapterFromStore(store);
      const data = dataSummary(store);
      const running = listRuns(store, { status: 'running' });
      const recent = listRuns(store, { limit: 5 });
      const status = {
        baseModel: c.MORRIS_BASE_MODEL,
        backend: c.MORRIS_BACKEND,
        activeAdapter: active?.id ?? null,
        latestDataset: data.datasets[0] ?? null,
        articles: data.articlesOk,
        running: running.map((r) => ({ id: r.id, job: r.job, progress: r.progress, message: r.message })),
        recent: recent.map((r) => ({ id: r.id, job: r.job, status: r.status, ended_at: r.ended_at })),
        serve,
      };
      if (o.json) return console.log(JSON.stringify(status, null, 2));
      console.log(`Base model:     ${status.baseModel} (backend ${status.backend})`);
      console.log(`Active adapter: ${status.activeAdapter ?? 'none (base model)'}`);
      console.log(`Articles:       ${status.articles}; latest dataset ${(status.latestDataset as { id?: string } | null)?.id ?? '—'}`);
      console.log(`Running jobs:   ${running.length ? running.map((r) => `#${r.id} ${r.job} ${Math.round(r.progress * 100)}%`).join(', ') : 'none'}`);
      console.log(`Recent jobs:    ${recent.map((r) => `#${r.id} ${r.job} ${r.status}`).join(', ') || 'none'}`);
      const platforms = serve ? Object.entries(serve.platforms).filter(([, v]) => v !== 'off') : [];
      console.log(
        `Serve:          ${serve ? `answering on port ${c.PORT}; bots: ${platforms.map(([k, v]) => `${k} ${v}`).join(', ') || 'none configured'}` : `not answering on port ${c.PORT}`}`,
      );
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
