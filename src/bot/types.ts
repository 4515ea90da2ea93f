/**
 * The bots' platform-neutral vocabulary. Slack and Discord adapters turn their events into a
 * `GenerationRequest` (through the core), and everything behind the core is reached through two
 * injected ports: `TextGenerator` (writes the article) and `AdminActions` (runs jobs). The bots
 * never import src/model/ or src/jobs/ directly; src/serve/generator-adapters.ts and the serve
 * process wire the real implementations in.
 */
import type { GenerationEvent } from '../generation-events.ts';

export type Platform = 'slack' | 'discord' | 'web' | 'cli';

export type ArticleLength = 'short' | 'medium' | 'long';

export interface GenerationOptions {
  length: ArticleLength;
  /** Sampling temperature; undefined → the generator's configured default. */
  temperature?: number;
  /** An explicit token budget (the playground's field); undefined → from `length`. */
  maxNewTokens?: number;
  /** The voice asked for (`--as NAME`, Discord's `columnist:`); undefined → the default columnist. */
  columnist?: string;
}

export interface Requester {
  platform: Platform;
  /** Platform user id (Slack `U…`, Discord snowflake). */
  userId: string;
  /** Discord role ids of the member in the guild where they asked (for admin checks). */
  roleIds?: readonly string[];
  /** Channel (or DM) id the request came from. */
  channelId?: string;
}

/** One request for one article, whatever platform it came from. */
export interface GenerationRequest extends Requester {
  /** Reference id shown to the user on failure; also the `generations` row id. */
  id: string;
  topic: string;
  options: GenerationOptions;
  /** Set when this request revises an earlier article (see revise.ts). */
  revision?: Revision;
}

/** A revision's context: the article being revised and what the reader asked to change. */
export interface Revision {
  previousArticle: string;
  instruction: string;
}

// ---------------------------------------------------------------- TextGenerator port

/** What the generator is asked to do (the core has already resolved options into numbers). */
export interface GeneratorInput {
  /** The topic as the person wrote it (already length-capped and content-checked). */
  topic: string;
  /**
   * A revision of an earlier article on `topic`: the generator builds the conversation with
   * prompts.ts `revisionMessages` (system, the ask, the previous article, the instruction).
   */
  revision?: Revision;
  maxNewTokens: number;
  temperature?: number;
  /** Who asked, for the generator's own logs; never used for the text. */
  requestId: string;
  /** The voice to write in (its active adapter and style guide); undefined → the default columnist. */
  columnist?: string;
  /**
   * Background work (the dashboard's playground) waits behind every foreground request and has
   * its own small cap, so it can never fill the queue the bots use.
   */
  background?: boolean;
}

/** Which model answers right now (shown by the `version` admin command). */
export interface GeneratorInfo {
  backend: string;
  baseModel: string | null;
  adapterId: string | null;
  datasetId: string | null;
  /** Free-form details (device, queue length, loaded or not). */
  details?: string;
}

/** Yields the one event stream of src/generation-events.ts, whoever writes the text. */
export interface TextGenerator {
  generate(input: GeneratorInput, signal?: AbortSignal): AsyncIterable<GenerationEvent>;
  info(): Promise<GeneratorInfo>;
}

// ---------------------------------------------------------------- AdminActions port

/**
 * Admin operations, implemented by src/jobs (the serve process injects them). Each method returns
 * a short, human-readable plain-text summary (a few lines at most; the core formats it for the
 * platform) or throws a MorrisError whose message is shown to the admin. `actor` says who asked,
 * so jobs can record the trigger (e.g. "slack:U123").
 *
 * - `status`   — scheduler and running/last jobs, active adapter, queue length.
 * - `retrain`, `rescrape`, `rebuild` — start the job (or say it is already running) and return at
 *   once with the job id; they must not wait for the job to finish.
 * - `adapters` — list adapters (id, status, key metric), newest first.
 * - `promote`  — make adapter `adapterId` active (hot swap); throws NOT_FOUND for an unknown id.
 * - `rollback` — reactivate the previously active adapter.
 * - `cancel`   — cancel running job `jobId`; throws NOT_FOUND when no such running job exists.
 * `columnist` (retrain, rescrape, rebuild, adapters, rollback) names another voice than the
 * default one; an unknown name throws UNKNOWN_COLUMNIST with the known ones.
 */
export interface AdminActions {
  status(actor: AdminActor): Promise<string>;
  retrain(actor: AdminActor, columnist?: string): Promise<string>;
  rescrape(actor: AdminActor, columnist?: string): Promise<string>;
  rebuild(actor: AdminActor, columnist?: string): Promise<string>;
  adapters(actor: AdminActor, columnist?: string): Promise<string>;
  promote(actor: AdminActor, adapterId: string): Promise<string>;
  rollback(actor: AdminActor, columnist?: string): Promise<string>;
  cancel(actor: AdminActor, jobId: string): Promise<string>;
}

export interface AdminActor {
  platform: Platform;
  userId: string;
}

// ---------------------------------------------------------------- what the core hands adapters

/** Which model wrote an article. */
export interface Lineage {
  adapterId: string | null;
  baseModel: string | null;
  datasetId: string | null;
  /** The newest publication date among the dataset's articles (null: none dated, or no dataset). */
  newestArticle?: string | null;
  /** Who the voice is (its attribution); absent → the default columnist's. */
  columnist?: string;
}

/**
 * What a platform adapter shows while one request runs. `notice` replaces the placeholder
 * (queue position, "writing…"); `partial` is the article so far (raw text, not yet formatted);
 * exactly one terminal update (`final` or `failed`) ends the stream.
 */
export type ReplyUpdate =
  | { kind: 'notice'; text: string }
  | { kind: 'partial'; text: string }
  | { kind: 'final'; text: string; cut: boolean; generationId: string; reason?: string; lineage?: Lineage }
  | { kind: 'failed'; text: string; generationId: string | null };
