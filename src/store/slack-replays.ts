/**
 * The `slack_requests_seen` table: signatures of Slack requests already handled. Slack signs
 * `v0:<timestamp>:<body>`, and Bolt accepts a signature for five minutes, so the same signed
 * request sent again within that window would run again (an admin command twice). Remembering
 * each signature for longer than the window makes a replay visible, also after a restart.
 */
import type { Store } from './db.ts';

/** Longer than Slack's five-minute signature window, so a replay is always still remembered. */
export const SLACK_REPLAY_MEMORY_S = 10 * 60;

export interface ReplayGuard {
  /** Records the signature; false when it was seen before (a replay). */
  firstSeen(signature: string, requestTs: number): boolean;
}

export function slackReplayGuard(store: Store, nowS: () => number = () => Math.floor(Date.now() / 1000)): ReplayGuard {
  const insert = store.prepare('INSERT OR IGNORE INTO slack_requests_seen (signature, request_ts, seen_at) VALUES (?, ?, ?)');
  const prune = store.prepare('DELETE FROM slack_requests_seen WHERE seen_at < ?');
  let lastPrune = 0;
  return {
    firstSeen(signature, requestTs) {
      const now = nowS();
      if (now - lastPrune > 60) {
        prune.run(now - SLACK_REPLAY_MEMORY_S);
        lastPrune = now;
      }
      return insert.run(signature, requestTs, now).changes === 1;
    },
  };
}
