/**
 * Temporary files of a run. Writers put their output in `<final>.tmp-<pid>` (or `.<name>.tmp-<pid>`)
 * and rename it into place, and remove it when they fail; a process killed mid-write cannot, so
 * each start sweeps the temp files whose writer is gone. The PID in the name says whose it is: a
 * live PID is left alone (it may be writing right now, or the PID was reused — either way we do
 * not know the file is dead).
 */
import { isPidAlive } from '../pids.ts';
import fs from 'node:fs';
import path from 'node:path';
import { childLog } from '../log.ts';

const log = childLog('store');

/** `name.tmp-1234` and `.name.tmp-1234` (files or folders); the group is the writer's PID. */
const TMP_NAME = /\.tmp-(\d+)$/;

/** The temp path for `file` that this process writes and then renames into place. */
export function tmpPathFor(file: string): string {
  return `${file}.tmp-${process.pid}`;
}

/**
 * Removes temp files and folders under `dirs` (down to `depth` levels) whose writer PID is no
 * longer running. Missing folders are skipped. Returns the paths removed.
 */
export function sweepStaleTmpFiles(dirs: readonly string[], opts: { depth?: number; alive?: (pid: number) => boolean } = {}): string[] {
  const alive = opts.alive ?? isPidAlive;
  const removed: string[] = [];
  const walk = (dir: string, depth: number) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') log.warn({ err: e, dir }, 'cannot list a folder to sweep its temp files');
      return;
    }
    for (const d of entries) {
      const full = path.join(dir, d.name);
      const m = TMP_NAME.exec(d.name);
      if (m) {
        const pid = Number(m[1]);
        if (pid === process.pid || alive(pid)) continue;
        try {
          fs.rmSync(full, { recursive: true, force: true });
          removed.push(full);
        } catch (e) {
          log.warn({ err: e, path: full }, 'cannot remove a stale temp file');
        }
      } else if (d.isDirectory() && depth > 1) {
        walk(full, depth - 1);
      }
    }
  };
  for (const dir of dirs) walk(dir, opts.depth ?? 1);
  if (removed.length) log.info({ removed }, 'removed temp files left by processes that are gone');
  return removed;
}
