/**
 * The scrape_runs record of each crawl: opened with the owning pid, closed with how it ended
 * (finished, capped and by which cap, failed, cancelled). A process killed mid-scrape cannot close
 * its row; `recoverCrashedScrapes` closes such rows as `crashed` at the next scrape or serve start.
 */
import type { Store } from './db.ts';
import { isPidAlive } from '../pids.ts';

export type ScrapeRunStatus = 'running' | 'finished' | 'capped' | 'failed' | 'cancelled' | 'crashed';

/**
 * Runs this process opened and has not closed. A row with our own pid that is not here was left
 * by an earlier process that had the same pid: in a container the server is pid 1 every time.
 */
const openHere = new Set<number>();

export function openScrapeRun(store: Store, source: string): number {
  const id = Number(store.prepare('INSERT INTO scrape_runs (source, pid) VALUES (?, ?)').run(source, process.pid).lastInsertRowid);
  openHere.add(id);
  return id;
}

export function closeScrapeRun(store: Store, id: number, end: { status: ScrapeRunStatus; stopReason: string | null; summary: unknown }): void {
  store
    .prepare(
      `UPDATE scrape_runs SET ended_at = strftime('%Y-%m-%dT%H:%M:%fZ','now'), status = ?, stop_reason = ?, summary = ?
       WHERE id = ?`,
    )
    .run(end.status, end.stopReason, JSON.stringify(end.summary), id);
  openHere.delete(id);
}

export interface CrashedScrape {
  id: number;
  source: string;
  pid: number | null;
  started_at: string;
}

/**
 * Closes, as `crashed`, every scrape run still open whose process is gone (rows from before pids
 * were recorded have none, so they count as gone). A run of a live process is left alone; a pid
 * reused by an unrelated live process keeps its row open until that process ends.
 */
export function recoverCrashedScrapes(store: Store): CrashedScrape[] {
  const open = store
    .prepare(`SELECT id, source, pid, started_at FROM scrape_runs WHERE ended_at IS NULL ORDER BY id`)
    .all() as CrashedScrape[];
  const crashed = open.filter((r) => (r.pid === process.pid ? !openHere.has(r.id) : !isPidAlive(r.pid)));
  const close = store.prepare(
    `UPDATE scrape_runs SET ended_at = strftime('%Y-%m-%dT%H:%M:%fZ','now'), status = 'crashed', stop_reason = ?
     WHERE id = ? AND ended_at IS NULL`,
  );
  store.transaction(() => {
    for (const r of crashed) close.run(r.pid ? `process ${r.pid} ended while the scrape was in progress` : 'its process ended while the scrape was in progress', r.id);
  })();
  return crashed;
}

export interface SourceScrapes {
  source: string;
  started_at: string;
  ended_at: string | null;
  runs: number;
}

/** Per source: the latest start and end of a scrape, and how many there were. */
export function scrapesBySource(store: Store): SourceScrapes[] {
  return store
    .prepare(`SELECT source, MAX(started_at) AS started_at, MAX(ended_at) AS ended_at, COUNT(*) AS runs FROM scrape_runs GROUP BY source`)
    .all() as SourceScrapes[];
}
