/**
 * The SQLite store. WAL mode lets the serve process read while a training child process writes;
 * `busy_timeout` makes a second writer wait for the lock instead of failing, so two processes
 * writing at once lose nothing.
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { MorrisError } from '../errors.ts';
import { migrations } from './migrations.ts';
import { backupBeforeMigration } from './backup.ts';

export type Store = Database.Database;

export const BUSY_TIMEOUT_MS = 15_000;

export function openStore(dbPath: string, opts: { readonly?: boolean } = {}): Store {
  try {
    fs.mkdirSync(path.dirname(dbPath), { recursive: true });
    const db = new Database(dbPath, { readonly: opts.readonly ?? false });
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    if (!opts.readonly) {
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.pragma('foreign_keys = ON');
      migrate(db);
    }
    return db;
  } catch (e) {
    if (e instanceof MorrisError) throw e;
    throw new MorrisError('STORE_ERROR', `Cannot open the database at ${dbPath}: ${(e as Error).message}`, {
      hint: 'Check MORRIS_DATA_DIR points to a writable folder with free space; a corrupt file can be moved aside and rebuilt with `morris scrape --full`.',
      cause: e,
    });
  }
}

export function schemaVersion(db: Store): number {
  return db.pragma('user_version', { simple: true }) as number;
}

/** Applies pending migrations, each in its own IMMEDIATE transaction so two processes starting
 * at once cannot both apply the same one. */
export function migrate(db: Store): number {
  const sorted = [...migrations].sort((a, b) => a.version - b.version);
  const from = schemaVersion(db);
  const to = sorted[sorted.length - 1]!.version;
  // A database with data gets a backup before its schema changes (a fresh one has nothing to lose).
  if (from > 0 && from < to && db.name !== ':memory:') backupBeforeMigration(db, from, to);
  for (const m of sorted) {
    const apply = db.transaction(() => {
      if (schemaVersion(db) >= m.version) return;
      db.exec(m.sql);
      db.pragma(`user_version = ${m.version}`);
    });
    apply.immediate();
  }
  return schemaVersion(db);
}

export function latestSchemaVersion(): number {
  return Math.max(...migrations.map((m) => m.version));
}

/** Small key/value settings (e.g. last scrape time) that need no table of their own. */
export function getKv(db: Store, key: string): string | undefined {
  const row = db.prepare('SELECT value FROM kv WHERE key = ?').get(key) as { value: string } | undefined;
  return row?.value;
}

export function setKv(db: Store, key: string, value: string): void {
  db.prepare(
    `INSERT INTO kv (key, value) VALUES (?, ?)
     ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ','now')`,
  ).run(key, value);
}

export function deleteKv(db: Store, key: string): void {
  db.prepare('DELETE FROM kv WHERE key = ?').run(key);
}

export function audit(
  db: Store,
  entry: { platform: string; userId: string | null; command: string; args?: string; allowed: boolean; outcome?: string },
): void {
  db.prepare('INSERT INTO audit_log (platform, user_id, command, args, allowed, outcome) VALUES (?, ?, ?, ?, ?, ?)').run(
    entry.platform,
    entry.userId,
    entry.command,
    entry.args ?? null,
    entry.allowed ? 1 : 0,
    entry.outcome ?? null,
  );
}
