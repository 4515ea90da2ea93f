import type { Command } from 'commander';
import type { CliContext } from './context.ts';
import { MorrisError } from '../errors.ts';

// Placeholder until the owning area lands its commands.
export function register(program: Command, _ctx: CliContext): void {
  program.command('adapters').description('List, show, promote and roll back adapters').allowUnknownOption().action(() => { throw new MorrisError('INTERNAL', '`morris adapters` is not built yet.'); });
  program.command('status').description('Show what answers now: base model, adapter, dataset, queue, jobs').allowUnknownOption().action(() => { throw new MorrisError('INTERNAL', '`morris status` is not built yet.'); });
}
