/**
 * `morris privacy delete --platform slack|discord|web --user ID [--yes]`: deletes one person's
 * generations and feedback (see store/privacy.ts for what goes and what stays). Without --yes it
 * only prints what it would delete, because the deletion cannot be undone.
 */
import os from 'node:os';
import type { Command } from 'commander';
import type { CliContext } from './context.ts';

/** Who ran the command, for the audit log (the CLI has no platform identity). */
function localUser(): string | null {
  try {
    return os.userInfo().username;
  } catch {
    return null;
  }
}

export function register(program: Command, ctx: CliContext): void {
  const privacy = program.command('privacy').description("One person's data: delete their generations and feedback on request");

  privacy
    .command('delete')
    .description("Delete a person's generations, the feedback they gave, feedback on their articles and the message links (dry run without --yes)")
    .requiredOption('--platform <platform>', 'slack, discord or web')
    .requiredOption('--user <id>', 'their user id on that platform')
    .option('--yes', 'really delete (otherwise only print what would be deleted)')
    .action(async (o: { platform: string; user: string; yes?: boolean }) => {
      const { countPersonData, forgetPerson, formatCounts, parsePerson } = await import('../store/privacy.ts');
      const person = parsePerson(o.platform, o.user);
      const who = `${person.platform} user ${person.userId}`;
      if (!o.yes) {
        const c = countPersonData(ctx.store(), person);
        process.stdout.write(`Would delete for ${who}: ${formatCounts(c)}.\nNothing was deleted; run again with --yes to delete.\n`);
        return;
      }
      const c = forgetPerson(ctx.store(), person, { platform: 'cli', userId: localUser(), command: 'privacy delete' });
      process.stdout.write(`Deleted for ${who}: ${formatCounts(c)}.\n`);
    });
}
