import type { Command } from 'commander';
import type { CliContext } from './context.ts';
import { numberOption } from './options.ts';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('serve')
    .description('Start the bots that are configured, the scheduler and the web dashboard (stops cleanly on SIGTERM/SIGINT)')
    .option('--port <n>', 'HTTP port for the dashboard and Slack events (default: PORT, 3000)', numberOption('--port', 0, 65535, true))
    .option('--host <addr>', 'address to listen on (default: HOST, 0.0.0.0)')
    .action(async (o: { port?: number; host?: string }) => {
      // Loaded on use: serving pulls in the bots, the engine and the jobs, which `--help` does not need.
      const { runServeUntilSignal } = await import('../serve/process.ts');
      await runServeUntilSignal({ config: ctx.config(), port: o.port, host: o.host });
    });
}
