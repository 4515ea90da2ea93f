import type { Command } from 'commander';
import type { CliContext } from './context.ts';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('doctor')
    .description('Check this host: Node, ONNX Runtime providers, database, bots, base model')
    .option('--json', 'print the report as JSON')
    .action(async (opts: { json?: boolean }) => {
      const { collectDoctorReport, formatDoctorReport } = await import('../doctor.ts');
      const report = collectDoctorReport(ctx.config());
      process.stdout.write(opts.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatDoctorReport(report)}\n`);
    });
}
