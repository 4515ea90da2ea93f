/**
 * Backups and health on real SQLite files: online backups that pass quick_check and are pruned to
 * N, the backup before a migration, quick_check finding 16 KB of random bytes, and restores that
 * pick the last good backup, keep the damaged file aside and refuse while another process holds
 * the database.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { latestSchemaVersion, openStore, schemaVersion, type Store } from '../../src/store/db.ts';
import { migrations } from '../../src/store/migrations.ts';
import { backupDirFor, listBackups, restoreBackup, startDailyBackups, takeBackup } from '../../src/store/backup.ts';
import { fileProblems } from '../../src/store/quick-check.ts';
import { checkDatabase, malformedError } from '../../src/store/health.ts';
import { MorrisError } from '../../src/errors.ts';

let dir: string;
let dbPath: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'morris-backup-'));
  dbPath = path.join(dir, 'morris.db');
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

/** About 2 MB of articles, so the middle of the file is table pages. */
function fill(store: Store, n = 400): void {
  const ins = store.prepare("INSERT INTO articles (source, url, title, body) VALUES ('t', ?, 't', ?)");
  const from = (store.prepare('SELECT count(*) AS n FROM articles').get() as { n: number }).n;
  store.transaction(() => {
    for (let i = from; i < from + n; i++) ins.run(`https://example.com/${i}`, `word${i} `.repeat(600));
  })();
}

/** What the issue did: 16 KB of random bytes over the middle of the file. */
function corrupt(file: string): void {
  const fd = fs.openSync(file, 'r+');
  try {
    fs.writeSync(fd, randomBytes(16 * 1024), 0, 16 * 1024, Math.floor(fs.statSync(file).size / 2));
  } finally {
    fs.closeSync(fd);
  }
}

const count = (file: string) => {
  const db = new Database(file, { readonly: true });
  try {
    return (db.prepare('SELECT count(*) AS n FROM articles').get() as { n: number }).n;
  } finally {
    db.close();
  }
};

const rejection = (fn: () => unknown): MorrisError => {
  try {
    fn();
  } catch (e) {
    return e as MorrisError;
  }
  throw new Error('expected an error');
};

describe('takeBackup', () => {
  it('writes a checked, self-contained copy and keeps only the newest N', async () => {
    const store = openStore(dbPath);
    fill(store, 50);
    const first = await takeBackup(store, { keep: 2 });
    expect(path.dirname(first.file)).toBe(backupDirFor(dbPath));
    expect(count(first.file)).toBe(50);
    expect(fileProblems(first.file)).toEqual([]);
    // Rollback-journal mode: checking or restoring it leaves nothing beside it.
    expect(fs.readdirSync(backupDirFor(dbPath))).toEqual([path.basename(first.file)]);

    fill(store, 1);
    await new Promise((r) => setTimeout(r, 5)); // names carry milliseconds
    await takeBackup(store, { keep: 2 });
    await new Promise((r) => setTimeout(r, 5));
    const third = await takeBackup(store, { keep: 2 });
    store.close();
    const kept = listBackups(dbPath);
    expect(kept.map((b) => b.file)).toHaveLength(2);
    expect(kept[0]!.file).toBe(third.file);
    expect(kept.map((b) => b.file)).not.toContain(first.file);
  });

  it('refuses to back up a malformed database and keeps no copy of it', async () => {
    const store = openStore(dbPath);
    fill(store);
    store.close();
    corrupt(dbPath);
    const again = openStore(dbPath);
    try {
      await expect(takeBackup(again)).rejects.toMatchObject({ code: 'STORE_ERROR', message: expect.stringMatching(/malformed.*no backup was taken/) });
    } finally {
      again.close();
    }
    expect(listBackups(dbPath)).toEqual([]);
    expect(fs.readdirSync(backupDirFor(dbPath))).toEqual([]);
  });
});

describe('the backup before a migration', () => {
  it('is taken when a database with data has migrations pending, and only then', () => {
    // A database as an older release left it: the first two migrations only.
    const old = new Database(dbPath);
    for (const m of migrations.filter((x) => x.version <= 10)) old.exec(m.sql);
    old.pragma('user_version = 10');
    old.prepare("INSERT INTO articles (source, url, body) VALUES ('t', 'https://example.com/a', 'x')").run();
    old.close();

    const store = openStore(dbPath);
    expect(schemaVersion(store)).toBe(latestSchemaVersion());
    store.close();
    const [b, ...more] = listBackups(dbPath);
    expect(more).toEqual([]);
    expect(b!.label).toBe(`before-v${latestSchemaVersion()}`);
    const copy = new Database(b!.file, { readonly: true });
    expect(copy.pragma('user_version', { simple: true })).toBe(10);
    copy.close();
    expect(count(b!.file)).toBe(1);

    openStore(dbPath).close(); // up to date: no new backup
    openStore(path.join(dir, 'fresh.db')).close(); // a new database has nothing to keep
    expect(listBackups(dbPath)).toHaveLength(1);
    expect(listBackups(path.join(dir, 'fresh.db'))).toEqual([]);
  });
});

describe('startDailyBackups', () => {
  it('backs up at once when none is a day old, not when one is, and stops with the store', async () => {
    const store = openStore(dbPath);
    fill(store, 10);
    const daily = startDailyBackups(store, { keep: 7, checkEveryMs: 20 });
    await expect.poll(() => listBackups(dbPath).length).toBe(1);
    await new Promise((r) => setTimeout(r, 100)); // several checks: the new backup is fresh
    expect(listBackups(dbPath)).toHaveLength(1);
    daily.stop();
    store.close();
  });
});

describe('quick_check and restore', () => {
  it('finds 16 KB of random bytes; restore latest puts the last good backup back and keeps the bad file aside', async () => {
    const store = openStore(dbPath);
    fill(store);
    const good = await takeBackup(store);
    store.close();
    expect(checkDatabase(dbPath).status).toBe('ok');

    corrupt(dbPath);
    const health = checkDatabase(dbPath);
    expect(health.status).toBe('malformed');
    const err = malformedError(health);
    expect(err.code).toBe('STORE_ERROR');
    expect(err.message).toContain(`The database at ${dbPath} is malformed`);
    expect(err.hint).toContain('`morris db restore latest`');
    expect(err.hint).toContain(path.basename(good.file));

    // A newer backup that is itself damaged is passed over by `latest`, and refused by name.
    const bad = path.join(backupDirFor(dbPath), 'morris-29991231T000000000Z.db');
    fs.copyFileSync(dbPath, bad);
    expect(rejection(() => restoreBackup(dbPath, path.basename(bad))).code).toBe('BAD_INPUT');

    const damaged = fs.readFileSync(dbPath);
    const r = restoreBackup(dbPath, 'latest');
    expect(r.restored).toBe(good.file);
    expect(r.keptAside).toHaveLength(1);
    expect(fs.readFileSync(r.keptAside[0]!).equals(damaged)).toBe(true);
    expect(checkDatabase(dbPath).status).toBe('ok');
    expect(count(dbPath)).toBe(400);
  });

  it('without a good backup, says how to rebuild', () => {
    const store = openStore(dbPath);
    fill(store);
    store.close();
    corrupt(dbPath);
    const err = malformedError(checkDatabase(dbPath));
    expect(err.hint).toMatch(/No good backup.*morris scrape --full/);
    expect(rejection(() => restoreBackup(dbPath, 'latest')).code).toBe('NOT_FOUND');
  });

  it.skipIf(process.platform !== 'linux')('refuses while another process holds the database', async () => {
    const store = openStore(dbPath);
    fill(store, 5);
    await takeBackup(store);
    store.close();
    const holder = spawn(
      process.execPath,
      ['-e', `const D = require('better-sqlite3'); new D(${JSON.stringify(dbPath)}); console.log('open'); setTimeout(() => {}, 30000);`],
      { cwd: process.cwd(), stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
      await new Promise((r) => holder.stdout!.once('data', r));
      const err = rejection(() => restoreBackup(dbPath, 'latest'));
      expect(err.code).toBe('BUSY');
      expect(err.message).toContain(String(holder.pid));
      expect(fs.readdirSync(dir).filter((f) => f.includes('.bad-'))).toEqual([]);
    } finally {
      holder.kill();
    }
  });
});
