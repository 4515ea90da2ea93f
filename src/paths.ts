/**
 * Where the project's hand-kept inputs live: the repo's own data/ folder (columnists' folders and
 * the sample archive). MORRIS_DATA_DIR is only for what the program writes (database, datasets,
 * runs), so moving it never loses a style guide.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const REPO_DATA_DIR = path.join(REPO_ROOT, 'data');
/** One folder per voice: data/columnists/<name>/ (see data/columnists/README.md). */
export const COLUMNISTS_DIR = path.join(REPO_DATA_DIR, 'columnists');
/**
 * The columnist every row belonged to before columnists were data (migration 47 attributes old
 * rows to it) and the one that answers when a request names none. Store and migrations use the
 * same literal, so renaming it means a migration.
 */
export const DEFAULT_COLUMNIST_NAME = 'morris';
/** The default columnist's folder: its style guide and extra examples (what data/style held). */
export const STYLE_DIR = path.join(COLUMNISTS_DIR, DEFAULT_COLUMNIST_NAME);
export const SYSTEM_PROMPT_FILE = path.join(STYLE_DIR, 'system-prompt.md');
/** The default columnist's source profiles (what data/sources held). */
export const SOURCES_DIR = path.join(STYLE_DIR, 'sources');
export const SAMPLE_ARCHIVE_ROOT = path.join(REPO_DATA_DIR, 'sample-archive');
/** Readers' preference pairs bundled for the offline demo (original text, TRL preference JSONL). */
export const DEMO_FEEDBACK_FILE = path.join(REPO_DATA_DIR, 'feedback', 'demo-pairs.jsonl');
