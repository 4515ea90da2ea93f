/** Reading HTTP responses, shared by page fetches and robots.txt: redirects, capped bodies, error reasons. */

export const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

/** Reads a response body, stopping (and cancelling the transfer) once `max` bytes arrived. */
export async function readCapped(res: Response, max: number): Promise<{ bytes: Uint8Array; truncated: boolean }> {
  if (!res.body) return { bytes: new Uint8Array(0), truncated: false };
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  let truncated = false;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (size + value.length > max) {
      chunks.push(value.subarray(0, max - size));
      size = max;
      truncated = true;
      await reader.cancel().catch(() => undefined);
      break;
    }
    chunks.push(value);
    size += value.length;
  }
  return { bytes: Buffer.concat(chunks), truncated };
}

/** The short reason a failed request gives: 'timed out', a socket error code, or the message. */
export function networkReason(e: unknown): string {
  if (!e) return 'failed';
  const err = e as Error & { cause?: { code?: string; message?: string } };
  if (err.name === 'AbortError' || err.name === 'TimeoutError' || /timed out/.test(err.message)) return 'timed out';
  return err.cause?.code ?? err.cause?.message ?? err.message;
}
