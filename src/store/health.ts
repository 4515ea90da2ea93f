/**
 * Is the database file sound? `serve` asks once at start (`openServeStore`); `morris doctor` and
 * `morris db backups` ask too. A malformed file stops serve with the way back: the last good backup.
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { MorrisError } from '../errors.ts';
import { childLog } from '../log.ts';
import { fileProblems, quickCheck } from './quick-check.ts';
import { backupDirFor, listBackups, startDailyBackups } from './backup.ts';
import { openStore, type Store } from './db.ts';
import { sweepStaleTmpFiles } from './tmp-files.ts';

const log = childLog('store');

export interface DatabaseHealth {
  path: string;
  /** 'missing' before the first run. */
  status: 'ok' | 'malformed' | 'missing';
  problems: string[];
  checkMs: number;
}

/** quick_check of the database file at `dbPath` on a connection of its own (no migration). */
export function checkDatabase(dbPath: string): DatabaseHealth {
  const t0 = Date.now();
  if (!fs.existsSync(dbPath)) return { path: dbPath, status: 'missing', problems: [], checkMs: 0 };
  let problems: string[];
  let db: Database.Database | undefined;
  try {
    // Read-write: a WAL database with a -wal left by a crash needs it to be read at all.
    db = new Database(dbPath, { fileMustExist: true });
    problems = quickCheck(db);
  } catch (e) {
    problems = [(e as Error).message];
  } finally {
    db?.close();
  }
  return { path: dbPath, status: problems.length ? 'malformed' : 'ok', problems, checkMs: Date.now() - t0 };
}

/** The coded error for a malformed database, with the recovery that applies here. */
export function malformedError(health: DatabaseHealth): MorrisError {
  const good = listBackups(health.path).find((b) => fileProblems(b.file).length === 0);
  const hint = good
    ? `Restore the last good backup (${path.basename(good.file)}, taken ${good.at.toISOString()}) with \`morris db restore latest\`; ` +
      'the damaged file is kept aside, not deleted. `morris doctor` shows the backups.'
    : `No good backup in ${backupDirFor(health.path)}. Move ${path.basename(health.path)} aside (keep it) and rebuild: ` +
      '`morris scrape --full`, then `morris dataset build`.';
  return new MorrisError('STORE_ERROR', `The database at ${health.path} is malformed: ${health.problems.slice(0, 2).join('; ')}.`, { hint });
}

/**
 * The store as `serve` opens it: temp files of killed runs swept, quick_check passed (a malformed
 * file stops here with the way back), then opened and migrated, with the daily backup running.
 */
export function openServeStore(c: { dbPath: string; MORRIS_DATA_DIR: string; MORRIS_MODELS_DIR: string; MORRIS_BACKUP_KEEP: number }): Store {
  // Depth 3 reaches datasets/, backups/ and runs/<id>/ (checkpoints); adapters sit one level down.
  sweepStaleTmpFiles([path.resolve(c.MORRIS_DATA_DIR)], { depth: 3 });
  sweepStaleTmpFiles([path.resolve(c.MORRIS_MODELS_DIR, 'adapters')]);
  const health = checkDatabase(c.dbPath);
  if (health.status === 'malformed') throw malformedError(health);
  log.info({ path: c.dbPath, status: health.status, checkMs: health.checkMs }, 'database quick_check');
  const store = openStore(c.dbPath);
  startDailyBackups(store, { keep: c.MORRIS_BACKUP_KEEP });
  return store;
}
