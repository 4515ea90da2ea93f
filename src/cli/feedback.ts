/**
 * `morris feedback stats|export|import`: readers' ratings, edits and regenerations, and the
 * preference pairs derived from them (TRL's conversational preference JSONL). Wiring only: the
 * work is in store/feedback.ts and pipeline/dataset/preferences.ts, loaded when a command runs.
 */
import fs from 'node:fs';
import type { Command } from 'commander';
import type { CliContext } from './context.ts';
import { MorrisError } from '../errors.ts';
import { COLUMNIST_FLAG } from './options.ts';

export function register(program: Command, ctx: CliContext): void {
  const feedback = program.command('feedback').description("Readers' feedback from Slack and Discord, and the preference pairs it makes for DPO");

  feedback
    .command('stats')
    .description('Count ratings, regenerations, edits and the preference pairs they make (every voice, or one)')
    .option('--json', 'print as JSON')
    .option(COLUMNIST_FLAG, "only signals on this voice's articles")
    .action(async (o: { json?: boolean; columnist?: string }) => {
      const { feedbackStats } = await import('../store/feedback.ts');
      const { resolveColumnist } = await import('../columnists/folder.ts');
      const s = feedbackStats(ctx.store(), o.columnist === undefined ? undefined : resolveColumnist(o.columnist, ctx.config()).name);
      if (o.json) {
        process.stdout.write(`${JSON.stringify(s, null, 2)}\n`);
        return;
      }
      const lines = [
        `ratings: ${s.ratings.up} 👍, ${s.ratings.down} 👎`,
        `regenerations: ${s.regenerations}`,
        `edits: ${s.edits}`,
        `preference pairs: ${s.pairs.total} (from edits ${s.pairs.edit}, ratings ${s.pairs.rating}, picks ${s.pairs.pick})`,
        ...s.byAdapter.map((a) => `  adapter ${a.adapterId}: ${a.up} 👍, ${a.down} 👎`),
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    });

  feedback
    .command('export')
    .description("Write the preference pairs as TRL's conversational preference JSONL (prompt / chosen / rejected)")
    .option('--out <file>', 'write to this file instead of stdout')
    .option(COLUMNIST_FLAG, "only this voice's pairs, prompted with its style guide (default: morris)")
    .action(async (o: { out?: string; columnist?: string }) => {
      const { exportPreferenceLines } = await import('../pipeline/dataset/preferences.ts');
      const { servingSystemPrompt } = await import('../prompts.ts');
      const { resolveColumnist } = await import('../columnists/folder.ts');
      const voice = resolveColumnist(o.columnist, ctx.config());
      const lines = exportPreferenceLines(ctx.store(), servingSystemPrompt(voice.systemPromptFile).text, voice.name);
      if (!o.out) {
        process.stdout.write(lines.join(''));
        return;
      }
      fs.writeFileSync(o.out, lines.join(''));
      process.stderr.write(`Wrote ${lines.length} preference pair${lines.length === 1 ? '' : 's'} to ${o.out}\n`);
    });

  feedback
    .command('import <file>')
    .description("Read preference pairs in the same JSONL format (each becomes an imported article and its edit) as one voice's")
    .option(COLUMNIST_FLAG, 'the voice whose pairs these are: they train it and its gate measures on them (default: morris)')
    .action(async (file: string, o: { columnist?: string }) => {
      const { importPreferenceLines } = await import('../pipeline/dataset/preferences.ts');
      const { resolveColumnist } = await import('../columnists/folder.ts');
      // Checked before the file: an unknown voice gets the list of known ones whatever the file.
      const voice = resolveColumnist(o.columnist, ctx.config());
      if (!fs.existsSync(file)) throw new MorrisError('NOT_FOUND', `No file ${file}.`, { hint: 'Give the path of a .jsonl file written by `morris feedback export`.' });
      const r = importPreferenceLines(ctx.store(), fs.readFileSync(file, 'utf8'), file, voice.name);
      process.stdout.write(`Imported ${r.imported} preference pair${r.imported === 1 ? '' : 's'}${r.skipped ? ` (skipped ${r.skipped} whose texts are the same)` : ''}, on ${voice.name}'s articles.\n`);
    });
}
