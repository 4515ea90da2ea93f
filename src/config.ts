/**
 * The one place that reads the environment. `.env` (optional) is loaded first, then every key is
 * validated with zod; the result is frozen. Invalid values stop the program with a message that
 * names the key and what is expected. Every key here is listed with a comment in `.env.example`.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parse as parseDotenv } from 'dotenv';
import cronParser from 'node-cron';
import { z } from 'zod';
import { MorrisError } from './errors.ts';
import { COLUMNISTS_DIR } from './paths.ts';

const int = (min: number, max: number) => {
  const error = `expected a whole number from ${min} to ${max}`;
  return z.coerce.number({ error }).int({ error }).min(min, { error }).max(max, { error });
};
const num = (min: number, max: number) => {
  const error = `expected a number from ${min} to ${max}`;
  return z.coerce.number({ error }).min(min, { error }).max(max, { error });
};
const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'], { error: 'expected true or false' })
  .transform((v) => v === 'true' || v === '1' || v === 'yes');
/** Comma-separated list; empty string → []. */
const list = z.string().transform((s) =>
  s
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean),
);
const optionalString = z
  .string()
  .optional()
  .transform((s) => (s && s.trim() ? s.trim() : undefined));
const url = z.url({ message: 'expected an http(s) URL' });
/** The fields the scheduler's cron expressions have, in order (said by every cron error). */
export const CRON_FIELDS = 'minute hour day-of-month month day-of-week';
export const CRON_EXPECTED = `expected a cron expression with five fields: ${CRON_FIELDS} (e.g. "0 3 * * 1"), or "off"`;

/**
 * Exactly five fields, each valid. node-cron also takes a leading seconds field, so a six-field
 * expression such as "* * * * * *" would run a job every second: refused, not guessed at.
 */
export function isFiveFieldCron(expression: string): boolean {
  const e = expression.trim();
  return e.split(/\s+/).length === 5 && cronParser.validate(e);
}

export function isTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en-GB', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

const cron = z.string().refine((s) => s.trim() === 'off' || isFiveFieldCron(s), CRON_EXPECTED);

const schema = z.object({
  // --- foundation ---
  MORRIS_DATA_DIR: z.string().default('data'),
  MORRIS_MODELS_DIR: z.string().default('models'),
  PORT: int(0, 65535).default(3000),
  HOST: z.string().default('0.0.0.0'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  MORRIS_BASE_MODEL: z.string().min(1).default('HuggingFaceTB/SmolLM2-360M-Instruct'),
  /** The folder of columnist folders (data/columnists/<name>/); default: the repo's own. */
  MORRIS_COLUMNISTS_DIR: z.string().default(COLUMNISTS_DIR),

  // --- model engine ---
  MORRIS_DEVICE: z.enum(['auto', 'cpu', 'cuda', 'coreml', 'dml', 'webgpu']).default('auto'),
  MORRIS_QUANT: z.enum(['fp32', 'int8', 'int4']).default('fp32'),
  MORRIS_THREADS: int(0, 256).default(0),
  MORRIS_DECODE_KERNEL: z.enum(['auto', 'native', 'onnx']).default('auto'),
  MORRIS_MAX_BATCH: int(0, 256).default(0),
  MORRIS_KV_MEMORY_MB: int(0, 1_000_000).default(0),
  MORRIS_MAX_NEW_TOKENS: int(1, 8192).default(400),
  MORRIS_TEMPERATURE: num(0, 5).default(0.8),
  MORRIS_TOP_P: num(0, 1).default(0.95),
  MORRIS_TOP_K: int(0, 100000).default(50),
  MORRIS_REPETITION_PENALTY: num(0.5, 3).default(1.1),
  MORRIS_GENERATION_TIMEOUT_S: int(1, 3600).default(180),
  MORRIS_IDLE_UNLOAD_S: int(0, 86400 * 7).default(1800),
  MORRIS_QUEUE_MAX: int(1, 10000).default(50),
  HF_ENDPOINT: url.default('https://huggingface.co'),
  HF_TOKEN: optionalString,

  // --- training ---
  MORRIS_TRAIN_CONFIG: optionalString,
  MORRIS_TRAIN_THREADS: int(0, 256).default(1),
  MORRIS_TRAIN_MEMORY_MB: int(256, 1_000_000).default(8192),

  // --- pipeline ---
  MORRIS_CONTACT_URL: z.string().default('https://github.com/morris-bot/morris'),
  MORRIS_RATE_LIMIT_RPS: num(0.01, 100).default(1),
  MORRIS_HOST_CONCURRENCY: int(1, 32).default(2),
  MORRIS_FETCH_TIMEOUT_MS: int(100, 600_000).default(20_000),
  MORRIS_FETCH_RETRIES: int(0, 10).default(3),
  MORRIS_MAX_PAGE_BYTES: int(1024, 1_000_000_000).default(5_000_000),
  MORRIS_MAX_CRAWL_DELAY_S: int(1, 86_400).default(30),
  MORRIS_CRAWL_MAX_URLS: int(1, 10_000_000).default(5000),
  MORRIS_CRAWL_MAX_FETCHES: int(1, 10_000_000).default(2000),
  MORRIS_CRAWL_MAX_BYTES: int(1024, 1_000_000_000_000).default(500_000_000),
  MORRIS_CRAWL_MAX_SECONDS: int(1, 7 * 86_400).default(7200),
  MORRIS_NEAR_DUP_THRESHOLD: num(0, 1).default(0.85),
  MORRIS_EXTRA_EXAMPLES_RATIO: num(0, 10).default(0.2),
  MORRIS_MAX_SEQ_TOKENS: int(16, 131072).default(1024),

  // --- bots ---
  SLACK_BOT_TOKEN: optionalString,
  SLACK_SIGNING_SECRET: optionalString,
  SLACK_APP_TOKEN: optionalString,
  SLACK_API_URL: url.optional(),
  MORRIS_SLACK_ADMINS: list.default([]),
  DISCORD_TOKEN: optionalString,
  DISCORD_APPLICATION_ID: optionalString,
  DISCORD_API_URL: url.optional(),
  MORRIS_DISCORD_ADMINS: list.default([]),
  MORRIS_USER_RATE_LIMIT_PER_MIN: int(0, 10000).default(3),
  MORRIS_MAX_TOPIC_CHARS: int(1, 100_000).default(300),
  MORRIS_BLOCKLIST: list.default([]),
  MORRIS_BACKEND: z.enum(['local', 'openai']).default('local'),
  MORRIS_OPENAI_BASE_URL: url.optional(),
  MORRIS_OPENAI_MODEL: optionalString,
  MORRIS_OPENAI_API_KEY: optionalString,
  /** Who the default columnist's attribution line names ("AI-generated in the style of …"), over its columnist.json. */
  MORRIS_COLUMNIST: optionalString,

  // --- jobs / serve ---
  MORRIS_CRON_RESCRAPE: cron.default('0 3 * * 1'),
  MORRIS_CRON_REBUILD: cron.default('off'),
  MORRIS_CRON_RETRAIN: cron.default('off'),
  MORRIS_CRON_TZ: z.string().refine(isTimeZone, 'expected an IANA time zone such as UTC or Europe/London').default('UTC'),
  MORRIS_CHAIN: bool.default(true),
  MORRIS_RETRAIN_MIN_NEW_EXAMPLES: int(0, 1_000_000).default(10),
  MORRIS_DPO_MIN_NEW_PAIRS: int(0, 1_000_000).default(20),
  MORRIS_PROMOTE_MARGIN: num(0, 10).default(0.01),
  MORRIS_STYLE_TOLERANCE: num(0, 1).default(0.1),
  MORRIS_ADMIN_TOKEN: optionalString,
  MORRIS_SESSION_HOURS: num(0.1, 24 * 30).default(12),
  MORRIS_PUBLIC_URL: url.optional(),
  MORRIS_DASHBOARD_HOST: z.string().min(1).default('127.0.0.1'),
  MORRIS_DASHBOARD_PORT: int(0, 65535).optional(),
  MORRIS_HTTP_MAX_CONNECTIONS_PER_IP: int(1, 100_000).default(64),
  MORRIS_WEB_RATE_LIMIT_PER_MIN: int(0, 10000).default(5),
  MORRIS_WEB_QUEUE_MAX: int(1, 1000).default(2),
  MORRIS_SHUTDOWN_GRACE_S: int(0, 3600).default(30),
  MORRIS_SOURCES: list.default([]),

  // --- store ---
  MORRIS_BACKUP_KEEP: int(1, 1000).default(7),
});

/** Every key the schema knows (for .env.example checks and `morris doctor`). */
export const CONFIG_KEYS: readonly string[] = Object.freeze(Object.keys(schema.shape));

export type Config = Readonly<z.output<typeof schema>> & { readonly dbPath: string };

/** Pure: validates an environment-like record. Throws CONFIG_INVALID naming every bad key. */
export function loadConfig(env: Record<string, string | undefined>): Config {
  // Empty strings (as .env.example leaves them) mean "not set".
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const result = schema.safeParse(cleaned);
  if (!result.success) {
    throw configInvalid(
      result.error.issues.map((i) => {
        const key = String(i.path[0] ?? '?');
        return { key, value: env[key] ?? '', expected: i.message };
      }),
    );
  }
  const c = result.data;
  return Object.freeze({ ...c, dbPath: path.resolve(c.MORRIS_DATA_DIR, 'morris.db') });
}

/** One bad setting: the key (or flag), the value given, and what it expects. */
export interface ConfigProblem {
  key: string;
  value: string;
  expected: string;
}

/** The one CONFIG_INVALID error: every bad key on its own line, then what to do. */
export function configInvalid(problems: readonly ConfigProblem[]): MorrisError {
  const lines = problems.map((p) => `  ${p.key}=${JSON.stringify(p.value)}: ${p.expected}`);
  return new MorrisError('CONFIG_INVALID', `Invalid configuration:\n${lines.join('\n')}`, {
    hint: 'Fix the value in your environment or .env (see .env.example for every key and what it expects).',
  });
}

/**
 * A config with some keys replaced, validated again (the demo and tests run the real code on
 * their own folders and models this way).
 */
export function deriveConfig(base: Config, overrides: Record<string, string | undefined>): Config {
  const env: Record<string, string | undefined> = {};
  for (const key of CONFIG_KEYS) {
    const v = (base as Record<string, unknown>)[key];
    if (v !== undefined) env[key] = Array.isArray(v) ? v.join(',') : String(v);
  }
  return loadConfig({ ...env, ...overrides });
}

let cached: Config | undefined;

/** The process's config: environment over `.env` in the working directory, validated once. */
export function getConfig(): Config {
  if (!cached) {
    let fileEnv: Record<string, string> = {};
    const envFile = path.resolve('.env');
    if (fs.existsSync(envFile)) fileEnv = parseDotenv(fs.readFileSync(envFile));
    cached = loadConfig({ ...fileEnv, ...process.env });
  }
  return cached;
}

/** Tests and child processes that were handed explicit settings. */
export function setConfigForTests(env: Record<string, string | undefined>): Config {
  cached = loadConfig(env);
  return cached;
}
