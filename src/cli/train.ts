import type { Command } from 'commander';
import type { CliContext } from './context.ts';
import { MorrisError } from '../errors.ts';

// Placeholder until the owning area lands its commands.
export function register(program: Command, _ctx: CliContext): void {
  program.command('train').description('Fine-tune a LoRA adapter on a dataset version').allowUnknownOption().action(() => { throw new MorrisError('INTERNAL', '`morris train` is not built yet.'); });
}
