import type { Command } from 'commander';
import type { CliContext } from './context.ts';
import { registerTransfer } from './adapters-transfer.ts';
import { AdapterRegistry, adapterHistory, adapterValLoss, getAdapter, type AdapterRow } from '../jobs/registry.ts';
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
}
