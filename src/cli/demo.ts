import type { Command } from 'commander';
import type { CliContext } from './context.ts';
import { setLogLevel } from '../log.ts';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('demo')
    .description('Run the whole loop offline: sample archive, scrape, dataset, tiny model, LoRA training, evaluation, promotion, generation')
    .option('--dir <dir>', 'folder for everything the demo writes (wiped first)', 'data/demo')
    .option('--topic <text>', 'topic of the final article (default: a sample topic)')
    .option('--max-new-tokens <n>', 'length of the final article in tokens', (v) => Number.parseInt(v, 10), 120)
    .option('--json', 'print the summary as JSON at the end')
    .option('--verbose', 'also show the JSON logs (quiet by default: the stages report their own progress)')
    .action(async (opts: { dir: string; topic?: string; maxNewTokens: number; json?: boolean; verbose?: boolean }) => {
      if (!opts.verbose) setLogLevel('warn');
      // Loaded here, not at start-up: the demo pulls in every area, and `morris --help` should not.
      const { runDemo, formatDemoSummary } = await import('../demo.ts');
      process.stdout.write('Morris demo: the whole loop, offline, on a tiny generated model.\n');
      const summary = await runDemo(ctx.config(), {
        dir: opts.dir,
        topic: opts.topic,
        maxNewTokens: opts.maxNewTokens,
        print: (line) => process.stdout.write(`${line}\n`),
        onArticleText: (text) => process.stdout.write(text),
      });
      process.stdout.write(`${formatDemoSummary(summary)}\n`);
      if (opts.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
    });
}
