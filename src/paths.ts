/**
 * Where the project's hand-kept inputs live: the repo's own data/ folder (style guide, source
 * profiles, sample archive). MORRIS_DATA_DIR is only for what the program writes (database,
 * datasets, runs), so moving it never loses the style guide.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const REPO_DATA_DIR = path.join(REPO_ROOT, 'data');
export const STYLE_DIR = path.join(REPO_DATA_DIR, 'style');
export const SYSTEM_PROMPT_FILE = path.join(STYLE_DIR, 'system-prompt.md');
export const SOURCES_DIR = path.join(REPO_DATA_DIR, 'sources');
export const SAMPLE_ARCHIVE_ROOT = path.join(REPO_DATA_DIR, 'sample-archive');
/** Readers' preference pairs bundled for the offline demo (original text, TRL preference JSONL). */
export const DEMO_FEEDBACK_FILE = path.join(REPO_DATA_DIR, 'feedback', 'demo-pairs.jsonl');
