/**
 * Columnists as data: each voice is a folder `<root>/<name>/` holding `columnist.json` (who it is
 * and its settings, see settings.ts), `system-prompt.md` (the style guide), optionally
 * `extra-examples.jsonl` and `sources/<profile>.json` (source profiles, data/columnists/SOURCES.md).
 * This module finds, loads and creates folders; check.ts validates everything in one.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Config } from '../config.ts';
import { MorrisError } from '../errors.ts';
import { DEFAULT_COLUMNIST_NAME } from '../paths.ts';
import { COLUMNIST_NAME, COLUMNIST_NAME_RULE, columnistFileSchema, effectiveSettings, type ColumnistFile, type ColumnistSettings } from './settings.ts';

export { DEFAULT_COLUMNIST_NAME };

export const SETTINGS_FILE = 'columnist.json';

/** One voice, resolved: its names, the files it is made of, and the settings it runs with. */
export interface Columnist {
  name: string;
  dir: string;
  displayName: string;
  /** Who the attribution line names ("AI-generated in the style of …"). */
  attribution: string;
  description: string;
  systemPromptFile: string;
  extrasFile: string;
  sourcesDir: string;
  settings: ColumnistSettings;
  isDefault: boolean;
  /** The model name an OpenAI-compatible server answers this voice under (MORRIS_BACKEND=openai); null: none set. */
  openaiModel: string | null;
}

/** Folder names under `root` that look like columnists (valid names, with or without a settings file). */
export function listColumnistNames(root: string): string[] {
  if (!fs.existsSync(root)) return [];
  return fs
    .readdirSync(root, { withFileTypes: true })
    .filter((e) => e.isDirectory() && COLUMNIST_NAME.test(e.name))
    .map((e) => e.name)
    .sort();
}

/** The issues of a zod result as `file: key: message` lines, so a person knows where to look. */
export function issueLines(file: string, issues: readonly { path: readonly PropertyKey[]; message: string }[]): string[] {
  return issues.map((i) => `${file}: ${i.path.map(String).join('.') || '(file)'}: ${i.message}`);
}

/** Reads and validates `<dir>/columnist.json`; COLUMNIST_INVALID names the file and every bad key. */
export function readColumnistFile(dir: string): ColumnistFile {
  const file = path.join(dir, SETTINGS_FILE);
  if (!fs.existsSync(file)) {
    throw new MorrisError('COLUMNIST_INVALID', `${file} is missing.`, {
      hint: 'Every columnist folder needs a columnist.json with at least "displayName" and "attribution" (see data/columnists/README.md).',
    });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new MorrisError('COLUMNIST_INVALID', `${file} is not valid JSON: ${(e as Error).message}`, { cause: e, hint: 'Fix the JSON syntax, then run `morris columnists check`.' });
  }
  const r = columnistFileSchema.safeParse(raw);
  if (!r.success) {
    throw new MorrisError('COLUMNIST_INVALID', `Invalid columnist settings:\n${issueLines(file, r.error.issues).map((l) => `  ${l}`).join('\n')}`, {
      hint: 'Fix those keys (data/columnists/README.md lists them), then run `morris columnists check`.',
    });
  }
  return r.data;
}

/** The coded error for a name with no folder: it lists the voices there are and how to add one. */
export function unknownColumnist(name: string, root: string): MorrisError {
  const known = listColumnistNames(root);
  return new MorrisError('UNKNOWN_COLUMNIST', `No columnist named "${name}". Known columnists: ${known.join(', ') || '(none)'}.`, {
    hint: `Pick one of those, or add a voice with \`morris columnists add ${COLUMNIST_NAME.test(name) ? name : 'NAME'}\`.`,
  });
}

/**
 * Loads one columnist (settings file only; check.ts reads the rest). The default columnist's
 * attribution follows MORRIS_COLUMNIST when that is set, as it did before columnists were data.
 */
export function loadColumnist(name: string, config: Config): Columnist {
  const root = config.MORRIS_COLUMNISTS_DIR;
  const dir = path.join(root, name);
  if (!COLUMNIST_NAME.test(name) || !fs.existsSync(dir)) throw unknownColumnist(name, root);
  const file = readColumnistFile(dir);
  const isDefault = name === DEFAULT_COLUMNIST_NAME;
  return {
    name,
    dir,
    displayName: file.displayName,
    attribution: isDefault && config.MORRIS_COLUMNIST ? config.MORRIS_COLUMNIST : file.attribution,
    description: file.description,
    systemPromptFile: path.join(dir, 'system-prompt.md'),
    extrasFile: path.join(dir, 'extra-examples.jsonl'),
    sourcesDir: path.join(dir, 'sources'),
    settings: effectiveSettings(file, config),
    isDefault,
    openaiModel: file.openaiModel ?? (isDefault ? (config.MORRIS_OPENAI_MODEL ?? null) : null),
  };
}

/** `name`, or the default columnist when none is given: what every `--columnist` flag resolves through. */
export function resolveColumnist(name: string | undefined | null, config: Config): Columnist {
  return loadColumnist(name?.trim() || DEFAULT_COLUMNIST_NAME, config);
}

/** Every columnist that loads, and the reasons of those that do not (never thrown: one bad folder leaves the others). */
export function loadAllColumnists(config: Config): { columnists: Columnist[]; broken: { name: string; error: MorrisError }[] } {
  const columnists: Columnist[] = [];
  const broken: { name: string; error: MorrisError }[] = [];
  for (const name of listColumnistNames(config.MORRIS_COLUMNISTS_DIR)) {
    try {
      columnists.push(loadColumnist(name, config));
    } catch (e) {
      if (!(e instanceof MorrisError)) throw e;
      broken.push({ name, error: e });
    }
  }
  return { columnists, broken };
}

/**
 * Creates a new columnist folder with a settings file and a style guide to fill in. The style
 * guide starts as an editor's note only, which reads as empty, so `morris columnists check`
 * flags the voice until someone writes it (a model taught an empty style would be no voice).
 */
export function addColumnist(name: string, config: Config, opts: { displayName?: string; attribution?: string } = {}): string {
  const root = config.MORRIS_COLUMNISTS_DIR;
  if (!COLUMNIST_NAME.test(name)) throw new MorrisError('BAD_INPUT', `"${name}" is not a columnist name: ${COLUMNIST_NAME_RULE}.`, { hint: 'e.g. `morris columnists add house-style`.' });
  const dir = path.join(root, name);
  if (fs.existsSync(dir)) throw new MorrisError('BAD_INPUT', `A columnist "${name}" already exists at ${dir}.`, { hint: `See it with \`morris columnists show ${name}\`.` });
  const displayName = opts.displayName?.trim() || name;
  const settings = { displayName, attribution: opts.attribution?.trim() || displayName, retrain: {}, gate: {}, schedule: {} };
  fs.mkdirSync(path.join(dir, 'sources'), { recursive: true });
  fs.writeFileSync(path.join(dir, SETTINGS_FILE), `${JSON.stringify(settings, null, 2)}\n`);
  fs.writeFileSync(
    path.join(dir, 'system-prompt.md'),
    `<!-- The style guide for ${displayName}: how the voice writes, what it never does, its signature phrases.\n     Everything outside these comment markers is the system prompt the model is trained and served with. -->\n`,
  );
  fs.writeFileSync(path.join(dir, 'extra-examples.jsonl'), '');
  return dir;
}
