import type { Command } from 'commander';
import type { CliContext } from './context.ts';
import { MorrisError } from '../errors.ts';

// Placeholder until the owning area lands its commands.
export function register(program: Command, _ctx: CliContext): void {
  program.command('serve').description('Start the bots that are configured, the scheduler and the web dashboard').allowUnknownOption().action(() => { throw new MorrisError('INTERNAL', '`morris serve` is not built yet.'); });
}
