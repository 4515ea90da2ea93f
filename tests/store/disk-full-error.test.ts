/** One coded error for a full disk, however it surfaced (Node's ENOSPC, SQLite's SQLITE_FULL). */
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { describeError, isDiskFull, MorrisError, wrapFsError } from '../../src/errors.ts';

const sqliteFull = () => {
  // The error better-sqlite3 throws, made for real: a page cap stands in for a full disk.
  const db = new Database(':memory:');
  db.exec('CREATE TABLE t (x TEXT)');
  db.pragma('max_page_count = 3');
  try {
    db.prepare('INSERT INTO t VALUES (?)').run('x'.repeat(100_000));
  } catch (e) {
    return e;
  } finally {
    db.close();
  }
  throw new Error('expected SQLITE_FULL');
};

describe('DISK_FULL', () => {
  it('recognises ENOSPC, EDQUOT and SQLITE_FULL, and nothing else', () => {
    const full = sqliteFull();
    expect((full as { code: string }).code).toBe('SQLITE_FULL');
    for (const e of [full, Object.assign(new Error('no space'), { code: 'ENOSPC' }), Object.assign(new Error('quota'), { code: 'EDQUOT' })]) {
      expect(isDiskFull(e)).toBe(true);
    }
    expect(isDiskFull(Object.assign(new Error('x'), { code: 'EACCES' }))).toBe(false);
    expect(isDiskFull(new MorrisError('STORE_ERROR', 'x'))).toBe(false);
  });

  it('names the path and what was kept; other errors pass through unchanged', () => {
    const e = wrapFsError(sqliteFull(), 'the database /data/morris.db', 'kept 3 new articles') as MorrisError;
    expect(e.code).toBe('DISK_FULL');
    expect(e.message).toBe('Disk full while writing the database /data/morris.db; kept 3 new articles.');
    expect(e.hint).toMatch(/Free some disk space/);
    const other = new Error('boom');
    expect(wrapFsError(other, 'x')).toBe(other);
  });

  it('is what a person reads even when no writer wrapped it', () => {
    expect(describeError(sqliteFull())).toMatch(/^Disk full while writing data \(database or disk is full\); the write in progress was rolled back/);
    expect(describeError(new Error('boom'))).toBe('Unexpected error: boom');
  });
});
