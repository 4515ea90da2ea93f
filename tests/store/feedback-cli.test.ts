/**
 * `morris feedback stats|export|import` as a person runs them (the real CLI, a real SQLite file):
 * export writes TRL's conversational preference JSONL with the prompt generation uses, and import
 * into a fresh data dir gives the same pairs back.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SYSTEM_PROMPT_FILE } from '../../src/paths.ts';
import { articleMessages, servingSystemPrompt } from '../../src/prompts.ts';
import { openStore } from '../../src/store/db.ts';
import { recordFeedback } from '../../src/store/feedback.ts';
import { closeGeneration, openGeneration } from '../../src/store/generations.ts';

const dirs: string[] = [];
const tempDir = () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'morris-feedback-cli-'));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

function morris(args: string[], dataDir: string) {
  const r = spawnSync(process.execPath, ['bin/morris.mjs', ...args], {
    encoding: 'utf8',
    env: { ...process.env, LOG_LEVEL: 'warn', MORRIS_DATA_DIR: dataDir },
    timeout: 60_000,
  });
  expect(r.status, r.stderr).toBe(0);
  return r.stdout;
}

/** A data dir with one edited article and one request whose regeneration was liked over it. */
function seeded(): string {
  const dir = tempDir();
  const store = openStore(path.join(dir, 'morris.db'));
  const article = (id: string, topic: string, text: string, parentId?: string) => {
    openGeneration(store, { id, requester: { platform: 'slack', userId: 'U1' }, topic, parentId });
    closeGeneration(store, id, { outcome: 'ok', durationMs: 1, article: text, adapterId: 'a-1', datasetId: 'ds-1', baseModel: 'tiny' });
  };
  article('g-01', 'late trains', 'Trains, late again.\n\nAs ever.');
  recordFeedback(store, { generationId: 'g-01', kind: 'edit', editedText: 'Trains: late, again.\n\nAs ever, "sorry".', platform: 'slack', userId: 'U2' });
  article('g-02', 'roaming fees', 'Roaming, take one.');
  article('g-03', 'roaming fees', 'Roaming, take two.', 'g-02');
  recordFeedback(store, { generationId: 'g-02', kind: 'rating', value: -1, platform: 'discord', userId: 'D1' });
  recordFeedback(store, { generationId: 'g-03', kind: 'rating', value: 1, platform: 'discord', userId: 'D2' });
  store.close();
  return dir;
}

describe('morris feedback', () => {
  it('stats, export (TRL conversational preference JSONL), and import into a fresh data dir round-trip', () => {
    const a = seeded();
    const stats = JSON.parse(morris(['feedback', 'stats', '--json'], a));
    expect(stats).toMatchObject({ ratings: { up: 1, down: 1 }, edits: 1, pairs: { total: 2, edit: 1, rating: 1, pick: 0 } });
    expect(morris(['feedback', 'stats'], a)).toMatch(/preference pairs: 2 \(from edits 1, ratings 1, picks 0\)/);

    const lines = morris(['feedback', 'export'], a).trimEnd().split('\n').map((l) => JSON.parse(l));
    const system = servingSystemPrompt(SYSTEM_PROMPT_FILE).text;
    expect(lines).toEqual([
      {
        prompt: articleMessages(system, 'late trains'),
        chosen: [{ role: 'assistant', content: 'Trains: late, again.\n\nAs ever, "sorry".' }],
        rejected: [{ role: 'assistant', content: 'Trains, late again.\n\nAs ever.' }],
      },
      {
        prompt: articleMessages(system, 'roaming fees'),
        chosen: [{ role: 'assistant', content: 'Roaming, take two.' }],
        rejected: [{ role: 'assistant', content: 'Roaming, take one.' }],
      },
    ]);
    expect(lines[0].prompt.map((m: { role: string }) => m.role)).toEqual(['system', 'user']);

    const file = path.join(tempDir(), 'pairs.jsonl');
    morris(['feedback', 'export', '--out', file], a);
    const b = tempDir();
    expect(morris(['feedback', 'import', file], b)).toMatch(/Imported 2 preference pairs/);
    expect(JSON.parse(morris(['feedback', 'stats', '--json'], b)).pairs.total).toBe(stats.pairs.total);
    expect(morris(['feedback', 'export'], b)).toBe(fs.readFileSync(file, 'utf8'));
  }, 120_000);

  it('import refuses a malformed line and names it, importing nothing', () => {
    const dir = tempDir();
    const file = path.join(dir, 'bad.jsonl');
    fs.writeFileSync(file, `${JSON.stringify({ prompt: [{ role: 'user', content: 'Write a column about x.' }], chosen: [{ role: 'assistant', content: 'a' }], rejected: [{ role: 'assistant', content: 'b' }] })}\n{"prompt": []}\n`);
    const r = spawnSync(process.execPath, ['bin/morris.mjs', 'feedback', 'import', file], { encoding: 'utf8', env: { ...process.env, LOG_LEVEL: 'warn', MORRIS_DATA_DIR: dir }, timeout: 60_000 });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/line 2: prompt has no user message/);
    expect(r.stderr).toMatch(/TRL conversational preference format/);
    expect(JSON.parse(morris(['feedback', 'stats', '--json'], dir)).pairs.total).toBe(0);
  }, 120_000);
});
