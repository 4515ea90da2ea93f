/**
 * Backups of the SQLite store, in `<data dir>/backups/morris-<UTC stamp>[-<label>].db`: one a day
 * while `serve` runs, one before each migration, and on demand (`morris db backup`). Only copies
 * that pass `quick_check` are kept, so "the latest backup" is always one that can be restored.
 * `restoreBackup` puts one back while nothing holds the database, keeping the damaged file aside.
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { MorrisError, wrapFsError } from '../errors.ts';
import { childLog } from '../log.ts';
import { fileProblems, quickCheck } from './quick-check.ts';
import { tmpPathFor } from './tmp-files.ts';
import type { Store } from './db.ts';

const log = childLog('store');

export const DEFAULT_BACKUP_KEEP = 7;
export const BACKUP_INTERVAL_MS = 24 * 3600_000;
/** How often serve looks whether the daily backup is due: an hour late at worst, and a restart
 * does not reset the clock (the age of the newest backup on disk decides). */
export const BACKUP_CHECK_MS = 3600_000;

export interface BackupInfo {
  file: string;
  /** When it was taken (from its name, which sorts by time). */
  at: Date;
  bytes: number;
  /** Why it was taken besides the daily schedule, e.g. `before-v41`. */
  label: string | null;
}

export function backupDirFor(dbPath: string): string {
  return path.join(path.dirname(path.resolve(dbPath)), 'backups');
}

const BACKUP_NAME = /^(.+)-(\d{8}T\d{9}Z)(?:-([a-z0-9-]+))?\.db$/;

/** 2026-12-03T20:25:36.123Z → 20261203T202536123Z: sortable and safe in a file name. */
function stamp(d: Date): string {
  return d.toISOString().replace(/[-:.]/g, '');
}

function parseStamp(s: string): Date {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(\d{3})Z$/.exec(s) as RegExpExecArray;
  return new Date(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}.${m[7]}Z`);
}

/** Backups of `dbPath`, newest first. */
export function listBackups(dbPath: string): BackupInfo[] {
  const dir = backupDirFor(dbPath);
  const base = path.basename(dbPath, '.db');
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const out: BackupInfo[] = [];
  for (const name of names) {
    const m = BACKUP_NAME.exec(name);
    if (!m || m[1] !== base) continue;
    const file = path.join(dir, name);
    out.push({ file, at: parseStamp(m[2]!), bytes: fs.statSync(file).size, label: m[3] ?? null });
  }
  return out.sort((a, b) => b.at.getTime() - a.at.getTime());
}

function backupPath(dbPath: string, label?: string): string {
  const base = path.basename(dbPath, '.db');
  return path.join(backupDirFor(dbPath), `${base}-${stamp(new Date())}${label ? `-${label}` : ''}.db`);
}

/** Deletes all but the newest `keep` backups. Returns what was deleted. */
export function pruneBackups(dbPath: string, keep: number): string[] {
  const old = listBackups(dbPath).slice(Math.max(1, keep));
  for (const b of old) fs.rmSync(b.file, { force: true });
  if (old.length) log.info({ removed: old.map((b) => b.file) }, 'removed old backups');
  return old.map((b) => b.file);
}

/**
 * Readies a fresh copy: rollback-journal mode, so checking or restoring it later (even read-only)
 * leaves no -wal/-shm beside it, then quick_check. A copy that fails is deleted by the caller:
 * keeping it would make `restore latest` pick it.
 */
function finishCopy(tmp: string, dbPath: string): void {
  const copy = new Database(tmp, { fileMustExist: true });
  let problems: string[];
  try {
    copy.pragma('journal_mode = DELETE');
    problems = quickCheck(copy);
  } finally {
    copy.close();
  }
  if (problems.length) {
    throw new MorrisError('STORE_ERROR', `The database at ${dbPath} is malformed (${problems[0]}); no backup was taken of it.`, {
      hint: 'Restore the last good backup with `morris db restore latest` (see `morris db backups`).',
    });
  }
}

/**
 * An online backup with better-sqlite3's backup API: it copies pages in small steps between
 * other work, so serve keeps answering and writers are not blocked. Written to a temp file,
 * checked, then renamed into place; old ones beyond `keep` are pruned.
 */
export async function takeBackup(db: Store, opts: { keep?: number; label?: string } = {}): Promise<BackupInfo> {
  const file = backupPath(db.name, opts.label);
  const tmp = tmpPathFor(file);
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    await db.backup(tmp);
    finishCopy(tmp, db.name);
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw wrapFsError(e, `a backup in ${path.dirname(file)}`, 'the database itself is unchanged and no partial backup was kept');
  }
  pruneBackups(db.name, opts.keep ?? DEFAULT_BACKUP_KEEP);
  const info = listBackups(db.name).find((b) => b.file === file) as BackupInfo;
  log.info({ file, bytes: info.bytes }, 'database backed up');
  return info;
}

/**
 * The backup before a migration. It has to be synchronous, as opening the store is (every entry
 * point opens it so), and better-sqlite3's backup() is asynchronous; `VACUUM INTO` writes the
 * same consistent snapshot in one statement. Not pruned here: the next daily backup prunes.
 */
export function backupBeforeMigration(db: Store, fromVersion: number, toVersion: number): string {
  const file = backupPath(db.name, `before-v${toVersion}`);
  const tmp = tmpPathFor(file);
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    db.prepare('VACUUM INTO ?').run(tmp);
    finishCopy(tmp, db.name);
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw wrapFsError(e, `the backup before migrating ${db.name} from schema ${fromVersion}`, 'the database was not migrated and is unchanged');
  }
  log.info({ file, fromVersion, toVersion }, 'database backed up before migrating');
  return file;
}

/**
 * While serve runs: a backup whenever the newest one is a day old, checked hourly and at once.
 * The timer does not keep the process alive and stops by itself once the store is closed.
 */
export function startDailyBackups(db: Store, opts: { keep: number; intervalMs?: number; checkEveryMs?: number }): { stop(): void } {
  const interval = opts.intervalMs ?? BACKUP_INTERVAL_MS;
  let running = false;
  const check = () => {
    if (!db.open) return stop();
    const newest = listBackups(db.name).find((b) => b.label === null)?.at.getTime() ?? 0;
    if (running || Date.now() - newest < interval) return;
    running = true;
    takeBackup(db, { keep: opts.keep })
      .catch((e) => {
        // A failed daily backup must not stop serving; the log says why (disk full, malformed).
        if (db.open) log.error({ err: e }, 'daily database backup failed');
      })
      .finally(() => (running = false));
  };
  const timer = setInterval(check, opts.checkEveryMs ?? BACKUP_CHECK_MS);
  timer.unref();
  const stop = () => clearInterval(timer);
  check();
  return { stop };
}

/** Processes (other than this one) with `file` open, from /proc; empty where /proc is absent. */
export function processesHolding(file: string): number[] {
  const target = path.resolve(file);
  const wanted = new Set([target, `${target}-wal`, `${target}-shm`]);
  let pids: string[];
  try {
    pids = fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p) && Number(p) !== process.pid);
  } catch {
    return []; // no /proc (macOS, Windows): the check is skipped, as README says
  }
  const out: number[] = [];
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = fs.readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // gone, or not ours to read
    }
    for (const fd of fds) {
      let link: string;
      try {
        link = fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      if (wanted.has(link)) {
        out.push(Number(pid));
        break;
      }
    }
  }
  return out;
}

export interface RestoreResult {
  restored: string;
  /** Where the replaced database (and its -wal/-shm) now lie. */
  keptAside: string[];
}

/**
 * Puts a backup in place of the database: `which` is a file, a name in the backups folder, or
 * `latest` (the newest backup that passes quick_check). Refuses while another process has the
 * database open (a running serve would keep writing to the replaced file). The current database
 * is renamed aside, never deleted.
 */
export function restoreBackup(dbPath: string, which: string): RestoreResult {
  dbPath = path.resolve(dbPath);
  const holders = processesHolding(dbPath);
  if (holders.length) {
    throw new MorrisError('BUSY', `The database ${dbPath} is open in process ${holders.join(', ')}; not restoring under it.`, {
      hint: 'Stop `morris serve` (and any other morris command) first, then run the restore again.',
    });
  }
  const backup = pickBackup(dbPath, which);

  const aside = `${dbPath}.bad-${stamp(new Date())}`;
  const keptAside: string[] = [];
  for (const suffix of ['', '-wal', '-shm']) {
    if (!fs.existsSync(dbPath + suffix)) continue;
    fs.renameSync(dbPath + suffix, aside + suffix);
    keptAside.push(aside + suffix);
  }
  const tmp = tmpPathFor(dbPath);
  try {
    fs.copyFileSync(backup, tmp);
    fs.renameSync(tmp, dbPath);
  } catch (e) {
    // Put everything back as it was: a half-done restore must not leave no database at all.
    fs.rmSync(tmp, { force: true });
    for (const f of keptAside) fs.renameSync(f, dbPath + f.slice(aside.length));
    throw wrapFsError(e, dbPath, 'the database was left as it was');
  }
  log.info({ restored: backup, keptAside }, 'database restored from a backup');
  return { restored: backup, keptAside };
}

function pickBackup(dbPath: string, which: string): string {
  const backups = listBackups(dbPath);
  if (which === 'latest') {
    for (const b of backups) {
      if (fileProblems(b.file).length === 0) return b.file;
      log.warn({ file: b.file }, 'skipping a backup that fails quick_check');
    }
    throw new MorrisError('NOT_FOUND', `No usable backup of ${dbPath} in ${backupDirFor(dbPath)}.`, {
      hint: 'Move the damaged file aside and rebuild: `morris scrape --full`, then `morris dataset build`.',
    });
  }
  const file = [path.resolve(which), path.join(backupDirFor(dbPath), which)].find((f) => fs.existsSync(f));
  if (!file) {
    throw new MorrisError('NOT_FOUND', `No backup file ${which}.`, { hint: 'See `morris db backups` for the backups there are.' });
  }
  const problems = fileProblems(file);
  if (problems.length) {
    throw new MorrisError('BAD_INPUT', `${file} fails quick_check (${problems[0]}); not restoring it.`, {
      hint: 'Pick another one from `morris db backups`, or `latest` for the newest good one.',
    });
  }
  return file;
}
