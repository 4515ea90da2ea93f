import type { Command } from 'commander';
import type { CliContext } from './context.ts';
import { MorrisError } from '../errors.ts';

// Placeholder until the owning area lands its commands.
export function register(program: Command, _ctx: CliContext): void {
  program.command('doctor').description('Check this host: Node, ONNX Runtime providers, database, bots, base model').allowUnknownOption().action(() => { throw new MorrisError('INTERNAL', '`morris doctor` is not built yet.'); });
}
