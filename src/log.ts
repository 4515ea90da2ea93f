import { pino, type Logger } from 'pino';

/**
 * The project's structured logger (pino, JSON lines on stderr so stdout stays free for command
 * output such as a streamed article). The level comes from config; `setLogLevel` is called once
 * by each entry point after config is read.
 */
export const log: Logger = pino(
  { level: 'info', base: undefined, timestamp: pino.stdTimeFunctions.isoTime },
  pino.destination({ fd: 2, sync: true }),
);

export function setLogLevel(level: string): void {
  log.level = level;
}

export function childLog(component: string): Logger {
  return log.child({ component });
}
