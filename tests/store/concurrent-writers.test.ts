import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openStore, schemaVersion, latestSchemaVersion } from '../../src/store/db.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'morris-store-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

// A child process that opens the same file and inserts N rows one transaction at a time, the
// way a training child writes metrics while the serve process writes generations.
const writerScript = `
  const { openStore } = await import(${JSON.stringify(path.resolve('src/store/db.ts'))});
  const [dbPath, tag, n] = process.argv.slice(-3);
  const db = openStore(dbPath);
  const ins = db.prepare("INSERT INTO train_metrics (run_id, step, loss) VALUES (?, ?, ?)");
  for (let i = 0; i < Number(n); i++) ins.run(tag, i, i / 10);
  db.close();
`;

function runWriter(dbPath: string, tag: string, n: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', writerScript, dbPath, tag, String(n)], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve(code) : reject(new Error(`writer ${tag} exited ${code}: ${err}`))));
  });
}

describe('store', () => {
  it('applies migrations on open and is idempotent', () => {
    const dbPath = path.join(tmp, 'm.db');
    const a = openStore(dbPath);
    expect(schemaVersion(a)).toBe(latestSchemaVersion());
    expect(a.pragma('journal_mode', { simple: true })).toBe('wal');
    a.close();
    const b = openStore(dbPath);
    expect(schemaVersion(b)).toBe(latestSchemaVersion());
    b.close();
  });

  it('two processes writing at once, while this one reads, lose nothing', async () => {
    const dbPath = path.join(tmp, 'c.db');
    openStore(dbPath).close();
    const reader = openStore(dbPath);
    const count = reader.prepare('SELECT count(*) AS n FROM train_metrics');
    const seen: number[] = [];
    const timer = setInterval(() => seen.push((count.get() as { n: number }).n), 5);
    await Promise.all([runWriter(dbPath, 'a', 400), runWriter(dbPath, 'b', 400)]);
    clearInterval(timer);
    const rows = reader.prepare('SELECT run_id, count(*) AS n, count(DISTINCT step) AS d FROM train_metrics GROUP BY run_id ORDER BY run_id').all();
    expect(rows).toEqual([
      { run_id: 'a', n: 400, d: 400 },
      { run_id: 'b', n: 400, d: 400 },
    ]);
    // The reader saw the count only grow (never a torn or rolled-back state).
    for (let i = 1; i < seen.length; i++) expect(seen[i]).toBeGreaterThanOrEqual(seen[i - 1]!);
    expect(reader.pragma('integrity_check', { simple: true })).toBe('ok');
    reader.close();
  });
});
