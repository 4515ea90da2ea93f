/**
 * Which columnist answers a request, as the bots see it: the core checks `--as NAME` (or Discord's
 * `columnist:` option) against the columnist folders before anything is queued, and an unknown
 * name is refused with the known ones; the article's attribution line names that voice.
 */
import type { Config } from '../config.ts';
import { isMorrisError, MorrisError } from '../errors.ts';
import { DEFAULT_COLUMNIST_NAME, loadAllColumnists, resolveColumnist } from '../columnists/folder.ts';
import { deleteKv, getKv, setKv, type Store } from '../store/db.ts';
import type { GenerationOptions, Requester } from './types.ts';
import { DEFAULT_COLUMNIST } from './render.ts';

export interface Voice {
  name: string;
  displayName: string;
  /** Who "AI-generated in the style of …" names. */
  attribution: string;
}

/**
 * The columnists a bot may write as (CoreSettings.voices; the core's `columnist` setting is the
 * default voice's attribution), read from their folders on each call, so a new one needs no restart.
 */
export interface VoiceDirectory {
  /** Throws UNKNOWN_COLUMNIST (listing the known ones) or COLUMNIST_INVALID. */
  resolve(name: string): Voice;
  /** Every voice that loads, for Discord's autocomplete. */
  list(): Voice[];
}

/** The core's voice settings: the default voice's attribution (MORRIS_COLUMNIST, else render.ts's) and the other voices' folders. */
export function voiceSettingsFromConfig(config: Config): { columnist: string; voices: VoiceDirectory } {
  return { columnist: config.MORRIS_COLUMNIST ?? DEFAULT_COLUMNIST, voices: voiceDirectoryFromConfig(config) };
}

export function voiceDirectoryFromConfig(config: Config): VoiceDirectory {
  const voice = (c: { name: string; displayName: string; attribution: string }): Voice => ({ name: c.name, displayName: c.displayName, attribution: c.attribution });
  return {
    resolve: (name) => voice(resolveColumnist(name, config)),
    list: () => loadAllColumnists(config).columnists.map(voice),
  };
}

/**
 * The voice a request is written in. The default columnist keeps the core's configured
 * attribution (MORRIS_COLUMNIST), exactly as before columnists were data; another one needs a
 * directory to be found in.
 */
export function voiceOf(settings: { columnist: string; voices?: VoiceDirectory }, options: Pick<GenerationOptions, 'columnist'>): Voice {
  const name = options.columnist;
  if (!name || name === DEFAULT_COLUMNIST_NAME) return { name: DEFAULT_COLUMNIST_NAME, displayName: DEFAULT_COLUMNIST_NAME, attribution: settings.columnist };
  if (!settings.voices) {
    // A core built without a directory (tests, embedders) knows only the default voice.
    throw new MorrisError('UNKNOWN_COLUMNIST', `No columnist named "${name}". Known columnists: ${DEFAULT_COLUMNIST_NAME}.`);
  }
  return settings.voices.resolve(name);
}

// ---------------------------------------------------------------- per-channel defaults

/** kv key of a channel's default columnist (set with `/morris-admin default-columnist NAME`). */
function channelKey(requester: Pick<Requester, 'platform' | 'channelId'>): string | null {
  return requester.channelId ? `channel-columnist:${requester.platform}:${requester.channelId}` : null;
}

/** The columnist a channel's admin chose for requests that name none; undefined when none was chosen. */
export function channelColumnist(store: Store, requester: Pick<Requester, 'platform' | 'channelId'>): string | undefined {
  const key = channelKey(requester);
  return key ? getKv(store, key) : undefined;
}

/** Sets (or, with null, clears) a channel's default columnist. */
export function setChannelColumnist(store: Store, requester: Pick<Requester, 'platform' | 'channelId'>, columnist: string | null): void {
  const key = channelKey(requester);
  if (!key) throw new MorrisError('BAD_INPUT', 'A default columnist belongs to a channel; ask in the channel it is for.');
  if (columnist === null) deleteKv(store, key);
  else setKv(store, key, columnist);
}

/** A request's options with the channel's default voice under them: `--as` (or Discord's option) still wins. */
export function withChannelVoice(store: Store, requester: Requester, options: Partial<GenerationOptions> | undefined): Partial<GenerationOptions> {
  const chosen = channelColumnist(store, requester);
  return chosen && options?.columnist === undefined ? { ...options, columnist: chosen } : (options ?? {});
}

/** Discord allows 25 autocomplete choices. */
export const MAX_AUTOCOMPLETE_CHOICES = 25;

/** Autocomplete for Discord's `columnist:` option: voices whose name or display name contains what was typed. */
export function columnistChoices(voices: readonly Voice[], typed: string): { name: string; value: string }[] {
  const q = typed.trim().toLowerCase();
  return voices
    .filter((v) => !q || v.name.includes(q) || v.displayName.toLowerCase().includes(q))
    .slice(0, MAX_AUTOCOMPLETE_CHOICES)
    .map((v) => ({ name: v.displayName === v.name ? v.name : `${v.displayName} (${v.name})`, value: v.name }));
}

/** The voice a request's options name: the one asked for, else the default one. */
export function voiceName(options: Pick<GenerationOptions, 'columnist'>): string {
  return options.columnist || DEFAULT_COLUMNIST_NAME;
}

/** Who an article's attribution names, for one already written: its voice's, or its name when that folder is gone. */
export function attributionOf(settings: { columnist: string; voices?: VoiceDirectory }, columnist: string): string {
  try {
    return voiceOf(settings, { columnist }).attribution;
  } catch (e) {
    if (!isMorrisError(e)) throw e;
    return columnist;
  }
}

/** precheck's question: null when the voice exists, else the message the person gets. */
export function voiceProblem(settings: { columnist: string; voices?: VoiceDirectory }, options: Pick<GenerationOptions, 'columnist'>): string | null {
  try {
    voiceOf(settings, options);
    return null;
  } catch (e) {
    if (!isMorrisError(e)) throw e;
    return e.hint ? `${e.message} ${e.hint}` : e.message;
  }
}
