/**
 * `morris columnists check` and the scheduler's guard: everything in a columnist folder is read
 * and validated (settings, style guide, extra examples, every source profile), and each problem is
 * reported with its file and key, so a broken voice is found before a chain runs on it.
 */
import path from 'node:path';
import type { Config } from '../config.ts';
import { isMorrisError, MorrisError } from '../errors.ts';
import { listProfiles, loadProfile } from '../pipeline/crawl/profile.ts';
import { loadStyle } from '../pipeline/dataset/enhance.ts';
import { readSystemPrompt } from '../prompts.ts';
import { listColumnistNames, loadColumnist, type Columnist } from './folder.ts';

export interface ColumnistCheck {
  name: string;
  ok: boolean;
  /** One line per problem, each naming the file (and key or line) at fault. */
  problems: string[];
  /** Source profiles that load. */
  sources: string[];
}

/** A stand-in for `{{baseUrl}}` so profiles written for a run-time address validate in full. */
const CHECK_BASE_URL = 'http://127.0.0.1:1';

/** Validates one columnist folder in full; never throws for what is in the folder. */
export function checkColumnist(name: string, config: Config): ColumnistCheck {
  const problems: string[] = [];
  const sources: string[] = [];
  let c: Columnist;
  try {
    c = loadColumnist(name, config);
  } catch (e) {
    if (!isMorrisError(e)) throw e;
    return { name, ok: false, problems: [e.message], sources };
  }
  if (readSystemPrompt(c.systemPromptFile) === null) {
    problems.push(`${c.systemPromptFile}: missing or empty: write the style guide the voice is trained and served with`);
  } else {
    try {
      loadStyle(c.dir);
    } catch (e) {
      if (!isMorrisError(e)) throw e;
      problems.push(e.message);
    }
  }
  for (const profile of listProfiles(c.sourcesDir)) {
    try {
      const p = loadProfile(profile, { dir: c.sourcesDir, baseUrl: CHECK_BASE_URL });
      if (p.name !== profile) problems.push(`${path.join(c.sourcesDir, `${profile}.json`)}: name: "${p.name}" should be the file name, "${profile}"`);
      else sources.push(profile);
    } catch (e) {
      if (!isMorrisError(e)) throw e;
      problems.push(e.message);
    }
  }
  return { name, ok: problems.length === 0, problems, sources };
}

/** Every columnist folder, checked. */
export function checkAllColumnists(config: Config): ColumnistCheck[] {
  return listColumnistNames(config.MORRIS_COLUMNISTS_DIR).map((n) => checkColumnist(n, config));
}

/** Throws COLUMNIST_INVALID with every problem when the folder does not check out (what a job runs before it starts). */
export function assertColumnistUsable(name: string, config: Config): void {
  const r = checkColumnist(name, config);
  if (!r.ok) {
    throw new MorrisError('COLUMNIST_INVALID', `Columnist "${name}" does not load:\n${r.problems.map((p) => `  ${p}`).join('\n')}`, {
      hint: 'Fix those files, then run `morris columnists check`.',
    });
  }
}
