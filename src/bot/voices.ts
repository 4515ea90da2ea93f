/**
 * Which columnist answers a request, as the bots see it: the core checks `--as NAME` (or Discord's
 * `columnist:` option) against the columnist folders before anything is queued, and an unknown
 * name is refused with the known ones; the article's attribution line names that voice.
 */
import type { Config } from '../config.ts';
import { isMorrisError, MorrisError } from '../errors.ts';
import { DEFAULT_COLUMNIST_NAME, loadAllColumnists, resolveColumnist } from '../columnists/folder.ts';
import type { GenerationOptions } from './types.ts';

export interface Voice {
  name: string;
  displayName: string;
  /** Who "AI-generated in the style of …" names. */
  attribution: string;
}

/** The columnists a bot may write as (read from their folders on each call, so a new one needs no restart). */
/** CoreSettings.voices: the core's `columnist` setting is the default voice's attribution; this finds the others. */
export interface VoiceDirectory {
  /** Throws UNKNOWN_COLUMNIST (listing the known ones) or COLUMNIST_INVALID. */
  resolve(name: string): Voice;
  /** Every voice that loads, for Discord's autocomplete. */
  list(): Voice[];
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
