import type { Command } from 'commander';
import type { CliContext } from './context.ts';
import { MorrisError } from '../errors.ts';

// Placeholder until the owning area lands its commands.
export function register(program: Command, _ctx: CliContext): void {
  program.command('discord').description('Discord utilities (register slash commands)').allowUnknownOption().action(() => { throw new MorrisError('INTERNAL', '`morris discord` is not built yet.'); });
}
