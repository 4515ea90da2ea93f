import type { Command } from 'commander';
import type { CliContext } from './context.ts';
import { MorrisError } from '../errors.ts';

// Placeholder until the owning area lands its commands.
export function register(program: Command, _ctx: CliContext): void {
  program.command('demo').description('Run the whole loop offline: sample archive, scrape, dataset, tiny model, LoRA training, evaluation, promotion, generation').allowUnknownOption().action(() => { throw new MorrisError('INTERNAL', '`morris demo` is not built yet.'); });
}
