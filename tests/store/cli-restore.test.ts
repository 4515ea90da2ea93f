/**
 * A corrupted database as an operator meets it, through the real CLI: `morris serve` refuses to
 * start on it and names the recovery command, `morris doctor` shows the damage and the backups,
 * `morris db restore latest` puts the last good backup back (refusing while a serve holds the
 * file), and serve then starts.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore } from '../../src/store/db.ts';
import { MORRIS_BIN, runMorris } from '../morris-cli.ts';


let dir: string;
let dbPath: string;
let env: NodeJS.ProcessEnv;

const morris = (...args: string[]) => runMorris(args, { env, cwd: dir });

const articleCount = () => {
  const db = new Database(dbPath, { readonly: true });
  try {
    return (db.prepare('SELECT count(*) AS n FROM articles').get() as { n: number }).n;
  } finally {
    db.close();
  }
};

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'morris-cli-restore-'));
  dbPath = path.join(dir, 'data', 'morris.db');
  env = {
    PATH: process.env.PATH,
    HOME: dir,
    MORRIS_DATA_DIR: path.join(dir, 'data'),
    MORRIS_MODELS_DIR: path.join(dir, 'models'),
    MORRIS_CRON_RESCRAPE: 'off',
    LOG_LEVEL: 'warn',
  };
  // About 2 MB of articles, so the middle of the file is table pages.
  const store = openStore(dbPath);
  const ins = store.prepare("INSERT INTO articles (source, url, title, body) VALUES ('t', ?, 't', ?)");
  store.transaction(() => {
    for (let i = 0; i < 400; i++) ins.run(`https://example.com/${i}`, `word${i} `.repeat(600));
  })();
  store.close();
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('a corrupted database', () => {
  it('is refused by serve with the recovery command, restored from a backup by `morris db restore latest`, then serve starts', async () => {
    const backedUp = await morris('db', 'backup');
    expect(backedUp.code, backedUp.stderr).toBe(0);
    const backupFile = /Backed up to (\S+)/.exec(backedUp.stdout)![1]!;

    // 16 KB of random bytes in the middle of the file.
    const fd = fs.openSync(dbPath, 'r+');
    fs.writeSync(fd, randomBytes(16 * 1024), 0, 16 * 1024, Math.floor(fs.statSync(dbPath).size / 2));
    fs.closeSync(fd);

    const refused = await morris('serve', '--port', '0', '--host', '127.0.0.1');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`morris: The database at ${dbPath} is malformed`);
    expect(refused.stderr).toContain(`Restore the last good backup (${path.basename(backupFile)}`);
    expect(refused.stderr).toContain('`morris db restore latest`');

    const doctor = await morris('doctor');
    expect(doctor.stdout).toMatch(/warn database .* is malformed/);
    expect(doctor.stdout).toContain(`backups: 1 in ${path.join(dir, 'data', 'backups')}, latest ${path.basename(backupFile)}`);

    const restored = await morris('db', 'restore', 'latest');
    expect(restored.code, restored.stderr).toBe(0);
    expect(restored.stdout).toContain(`Restored ${dbPath} from ${backupFile}.`);
    const aside = /kept aside: (\S+)/.exec(restored.stdout)![1]!;
    expect(fs.existsSync(aside)).toBe(true); // the damaged file, never deleted
    expect(articleCount()).toBe(400);

    // Serve starts on the restored file; while it runs, a restore is refused.
    const serve = spawn(process.execPath, [MORRIS_BIN, 'serve', '--port', '0', '--host', '127.0.0.1'], {
      env: { ...env, LOG_LEVEL: 'info' },
      cwd: dir,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    const exited = new Promise<number | null>((r) => serve.once('exit', (code) => r(code)));
    try {
      await new Promise<void>((resolve, reject) => {
        serve.stderr!.on('data', (d: Buffer) => {
          err += d.toString();
          if (err.includes('"msg":"morris serve started"')) resolve();
        });
        serve.once('exit', () => reject(new Error(`serve exited:\n${err}`)));
      });
      expect(err).toMatch(/"status":"ok".*"msg":"database quick_check"/);
      const busy = await morris('db', 'restore', 'latest');
      expect(busy.code).toBe(1);
      expect(busy.stderr).toContain(`is open in process ${serve.pid}; not restoring under it`);
    } finally {
      serve.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
    expect(articleCount()).toBe(400);
  });
});
