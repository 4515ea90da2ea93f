/**
 * The `morris` command. Only wiring: each area registers its subcommands from src/cli/<area>.ts,
 * and this file owns the one top-level error handler for the CLI.
 */
import { Command, CommanderError } from 'commander';
import { describeError, isMorrisError } from './errors.ts';
import { log, setLogLevel } from './log.ts';
import { getConfig } from './config.ts';
import { createCliContext } from './cli/context.ts';
import { areas } from './cli/areas.ts';

const program = new Command('morris')
  .description('Morris writes articles in one columnist\'s voice: scrape, build datasets, fine-tune LoRA adapters, serve Slack/Discord bots.')
  .showHelpAfterError('(run with --help for usage)')
  .exitOverride();

const ctx = createCliContext();
for (const area of areas) area.register(program, ctx);

program.hook('preAction', () => {
  // Reading config here (not at import) keeps `--help` working when the config is broken.
  setLogLevel(getConfig().LOG_LEVEL);
});

try {
  await program.parseAsync(process.argv);
  ctx.close();
} catch (e) {
  ctx.close();
  if (e instanceof CommanderError) {
    // commander already printed help/usage; keep its exit code (0 for --help / --version).
    process.exitCode = e.exitCode;
  } else {
    if (isMorrisError(e)) log.debug({ err: e, code: e.code }, 'command failed');
    else log.error({ err: e }, 'command failed');
    process.stderr.write(`morris: ${describeError(e)}\n`);
    process.exitCode = isMorrisError(e) && e.code === 'CONFIG_INVALID' ? 78 : 1;
  }
}
