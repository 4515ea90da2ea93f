/**
 * `morris db backup|backups|restore`: wiring only; the work is in src/store/backup.ts.
 */
import path from 'node:path';
import type { Command } from 'commander';
import type { CliContext } from './context.ts';

export function register(program: Command, ctx: CliContext): void {
  const db = program.command('db').description('Back up and restore the database (backups are also taken daily by serve and before migrations)');

  db.command('backup')
    .description('Take an online backup now (data/backups; keeps the newest MORRIS_BACKUP_KEEP)')
    .action(async () => {
      const { takeBackup } = await import('../store/backup.ts');
      const b = await takeBackup(ctx.store(), { keep: ctx.config().MORRIS_BACKUP_KEEP });
      process.stdout.write(`Backed up to ${b.file} (${formatBytes(b.bytes)})\n`);
    });

  db.command('backups')
    .description('List the backups, newest first, with the health of the database')
    .option('--json', 'print as JSON')
    .action(async (o: { json?: boolean }) => {
      const { listBackups, backupDirFor } = await import('../store/backup.ts');
      const { checkDatabase } = await import('../store/health.ts');
      const { dbPath } = ctx.config();
      const backups = listBackups(dbPath);
      const health = checkDatabase(dbPath);
      if (o.json) {
        process.stdout.write(`${JSON.stringify({ database: health, backups }, null, 2)}\n`);
        return;
      }
      const lines = [
        `database ${dbPath}: ${health.status}${health.problems.length ? ` (${health.problems[0]})` : ''}`,
        backups.length ? `backups in ${backupDirFor(dbPath)}:` : `no backups in ${backupDirFor(dbPath)} yet (take one with \`morris db backup\`)`,
        ...backups.map((b) => `  ${b.at.toISOString()}  ${formatBytes(b.bytes).padStart(9)}  ${path.basename(b.file)}`),
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    });

  db.command('restore <file>')
    .description('Replace the database with a backup (a file, a name from `db backups`, or "latest"); the current file is kept aside. Stop serve first.')
    .action(async (which: string) => {
      const { restoreBackup } = await import('../store/backup.ts');
      // Not ctx.store(): opening would migrate (and hold) the file being replaced.
      const r = restoreBackup(ctx.config().dbPath, which);
      process.stdout.write(
        [`Restored ${ctx.config().dbPath} from ${r.restored}.`, ...r.keptAside.map((f) => `  kept aside: ${f}`), ''].join('\n'),
      );
    });
}

function formatBytes(n: number): string {
  return n < 1024 * 1024 ? `${(n / 1024).toFixed(0)} KiB` : `${(n / 1024 / 1024).toFixed(1)} MiB`;
}
