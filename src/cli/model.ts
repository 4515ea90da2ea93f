import type { Command } from 'commander';
import type { CliContext } from './context.ts';
import { MorrisError } from '../errors.ts';

// Placeholder until the owning area lands its commands.
export function register(program: Command, _ctx: CliContext): void {
  program.command('generate').description('Write an article on a topic (streams to stdout)').allowUnknownOption().action(() => { throw new MorrisError('INTERNAL', '`morris generate` is not built yet.'); });
  program.command('model').description('Base models: init-tiny, pull, list, merge').allowUnknownOption().action(() => { throw new MorrisError('INTERNAL', '`morris model` is not built yet.'); });
}
