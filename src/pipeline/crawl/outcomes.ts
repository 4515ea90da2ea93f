/** What the crawl's steps share to classify and report outcomes. */
import { MorrisError } from '../../errors.ts';

/** Off-host URLs listed by reason in a summary; the count covers them all. */
export const MAX_OFF_HOST_LISTED = 50;

export function throwIfCancelled(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new MorrisError('CANCELLED', 'Scrape cancelled; everything fetched so far is stored.');
}

export function isCode(e: unknown, code: string): boolean {
  return e instanceof MorrisError && e.code === code;
}

export function reasonOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Case-insensitive match of a profile's author filter. */
export const contains = (hay: string, needle: string) => hay.toLowerCase().includes(needle.toLowerCase());
