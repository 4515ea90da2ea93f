/**
 * SQLite's quick_check, the one health test the store uses (serve's start, doctor, backups and
 * restores). A leaf module, so the backup and health modules can both use it.
 */
import Database from 'better-sqlite3';

/**
 * quick_check, not integrity_check: it skips checking every index against its table (the
 * O(N log N) part), so its cost is one read of each page — bounded by the file's size, about a
 * second per GB from an SSD — and it still catches malformed pages, which is what random damage
 * does. The argument caps the problems collected: one is enough to refuse, a few help the log.
 */
export const QUICK_CHECK_MAX_ERRORS = 5;

/** Problems quick_check finds; [] when the database is sound. A file too damaged to read at all
 * (SQLITE_CORRUPT, SQLITE_NOTADB thrown) counts as one problem. */
export function quickCheck(db: Database.Database): string[] {
  try {
    const rows = db.pragma(`quick_check(${QUICK_CHECK_MAX_ERRORS})`, { simple: false }) as { quick_check: string }[];
    const lines = rows.flatMap((r) => r.quick_check.split('\n'));
    if (lines.length === 1 && lines[0] === 'ok') return [];
    // "*** in database main ***" heads the list; "Page N: never used" follows from the real damage.
    const real = lines.filter((l) => !/^\*\*\*/.test(l) && !/never used$/.test(l));
    return real.length ? real : lines;
  } catch (e) {
    return [(e as Error).message];
  }
}

/** quick_check of a file that is not in use, read-only so a bad backup is not touched. */
export function fileProblems(file: string): string[] {
  let db: Database.Database | undefined;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
    return quickCheck(db);
  } catch (e) {
    return [(e as Error).message];
  } finally {
    db?.close();
  }
}
