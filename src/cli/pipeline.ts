import type { Command } from 'commander';
import type { CliContext } from './context.ts';
import { MorrisError } from '../errors.ts';

// Placeholder until the owning area lands its commands.
export function register(program: Command, _ctx: CliContext): void {
  program.command('scrape').description('Scrape configured sources (polite, incremental)').allowUnknownOption().action(() => { throw new MorrisError('INTERNAL', '`morris scrape` is not built yet.'); });
  program.command('dataset').description('Build, inspect and import datasets').allowUnknownOption().action(() => { throw new MorrisError('INTERNAL', '`morris dataset` is not built yet.'); });
}
