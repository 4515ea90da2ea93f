/**
 * POST /slack/events before Bolt sees it: a body of sane size, a timestamp inside the window on
 * both sides (Bolt refuses only stale ones), a valid signature, and a signature not seen before
 * (Bolt does not remember them). A replay is acknowledged and ignored; until the bot is ready the
 * answer is 503 with Retry-After, so Slack retries instead of dropping the request.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { verifySlackRequest, type HTTPReceiver } from '@slack/bolt';
import { childLog } from '../log.ts';
import type { ReplayGuard } from '../store/slack-replays.ts';

const logger = childLog('slack');

/** Slack's signature window; a timestamp further than this from now, either way, is refused. */
export const SLACK_SIGNATURE_WINDOW_S = 5 * 60;
/** Slack's payloads are small; a larger body is not Slack. */
export const SLACK_MAX_BODY_BYTES = 1024 * 1024;

export interface SlackEventsGuard {
  signingSecret: string;
  replayGuard?: ReplayGuard;
  ready(): boolean;
  receiver: HTTPReceiver;
}

export function slackEventsHandler(opts: SlackEventsGuard): (req: IncomingMessage, res: ServerResponse) => void {
  const acceptSigned = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const refuse = (status: number, why: string) => {
      logger.warn({ status, why }, 'Slack request refused');
      res.writeHead(status, { 'content-type': 'text/plain' });
      res.end(why);
    };
    if (!opts.ready()) {
      res.writeHead(503, { 'retry-after': '10', 'content-type': 'text/plain' });
      res.end('Slack is still connecting; try again shortly.');
      return;
    }
    const raw = await readBody(req, SLACK_MAX_BODY_BYTES);
    if (raw === null) return refuse(413, 'body too large');
    const sslCheck = req.headers['content-type'] === 'application/x-www-form-urlencoded' && /(^|&)ssl_check=1(&|$)/.test(raw.toString());
    if (!sslCheck) {
      const signature = req.headers['x-slack-signature'];
      const ts = Number(req.headers['x-slack-request-timestamp']);
      if (typeof signature !== 'string' || !Number.isInteger(ts)) return refuse(401, 'missing signature headers');
      if (Math.abs(Date.now() / 1000 - ts) > SLACK_SIGNATURE_WINDOW_S) return refuse(401, 'timestamp outside the signature window');
      try {
        verifySlackRequest({ signingSecret: opts.signingSecret, body: raw.toString(), headers: { 'x-slack-signature': signature, 'x-slack-request-timestamp': ts } });
      } catch {
        return refuse(401, 'bad signature');
      }
      if (opts.replayGuard && !opts.replayGuard.firstSeen(signature, ts)) {
        logger.warn({ ts }, 'replayed Slack request acknowledged and ignored');
        res.writeHead(200);
        res.end();
        return;
      }
    }
    (req as IncomingMessage & { rawBody?: Buffer }).rawBody = raw;
    opts.receiver.requestListener(req, res);
  };
  return (req: IncomingMessage, res: ServerResponse) => {
    acceptSigned(req, res).catch((e: unknown) => {
      logger.debug({ err: e, url: req.url }, 'Slack request not handled');
      if (!res.headersSent) {
        res.writeHead(400);
        res.end();
      } else res.destroy();
    });
  };
}

/** The whole body, or null when it is larger than `limit` (the rest is not read). */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        req.removeAllListeners('data');
        req.resume();
        resolve(null);
      } else chunks.push(c);
    });
    req.on('end', () => resolve(size > limit ? null : Buffer.concat(chunks)));
    req.on('error', reject);
  });
}
