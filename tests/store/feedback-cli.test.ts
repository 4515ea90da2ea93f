/**
 * `morris feedback stats|export|import` as a person runs them (the real CLI, a real SQLite file):
 * export writes TRL's conversational preference JSONL with the prompt generation uses, and import
 * into a fresh data dir gives the same pairs back.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { COLUMNISTS_DIR, SYSTEM_PROMPT_FILE } from '../../src/paths.ts';
import { articleMessages, revisionMessages, servingSystemPrompt } from '../../src/prompts.ts';
import { openStore } from '../../src/store/db.ts';
import { recordFeedback } from '../../src/store/feedback.ts';
import { closeGeneration, openGeneration } from '../../src/store/generations.ts';
import { runMorris } from '../morris-cli.ts';

const dirs: string[] = [];
const tempDir = () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'morris-feedback-cli-'));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

/** The CLI on a data dir, whatever its exit. */
function cli(args: string[], dataDir: string, env: Record<string, string> = {}) {
  return runMorris(args, { env: { ...process.env, LOG_LEVEL: 'warn', MORRIS_DATA_DIR: dataDir, ...env } });
}

/** The CLI on a data dir, which must succeed: what it printed. */
async function morris(args: string[], dataDir: string, env: Record<string, string> = {}) {
  const r = await cli(args, dataDir, env);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout;
}

/**
 * A data dir with one edited article, one request whose regeneration was liked over it (and a
 * third take nobody rated: a pick), and a revision whose second take was liked over its first.
 */
function seeded(): string {
  const dir = tempDir();
  const store = openStore(path.join(dir, 'morris.db'));
  const article = (id: string, topic: string, text: string, link: { parentId?: string; kind?: 'regenerate' | 'revise'; instruction?: string } = {}) => {
    openGeneration(store, { id, requester: { platform: 'slack', userId: 'U1' }, topic, ...link });
    closeGeneration(store, id, { outcome: 'ok', durationMs: 1, article: text, adapterId: 'a-1', datasetId: 'ds-1', baseModel: 'tiny' });
  };
  article('g-01', 'late trains', 'Trains, late again.\n\nAs ever.');
  recordFeedback(store, { generationId: 'g-01', kind: 'edit', editedText: 'Trains: late, again.\n\nAs ever, "sorry".', platform: 'slack', userId: 'U2' });
  article('g-02', 'roaming fees', 'Roaming, take one.');
  article('g-03', 'roaming fees', 'Roaming, take two.', { parentId: 'g-02' });
  article('g-04', 'roaming fees', 'Roaming, take three.', { parentId: 'g-02' });
  recordFeedback(store, { generationId: 'g-02', kind: 'rating', value: -1, platform: 'discord', userId: 'D1' });
  recordFeedback(store, { generationId: 'g-03', kind: 'rating', value: 1, platform: 'discord', userId: 'D2' });
  recordFeedback(store, { generationId: 'g-03', kind: 'rating', value: 1, platform: 'discord', userId: 'D3' });
  article('g-05', 'roaming fees', 'Roaming, shorter.', { parentId: 'g-03', kind: 'revise', instruction: 'shorter' });
  article('g-06', 'roaming fees', 'Roaming, shorter still.', { parentId: 'g-05', kind: 'regenerate', instruction: 'shorter' });
  recordFeedback(store, { generationId: 'g-05', kind: 'rating', value: -1, platform: 'slack', userId: 'U3' });
  recordFeedback(store, { generationId: 'g-06', kind: 'rating', value: 1, platform: 'slack', userId: 'U3' });
  store.close();
  return dir;
}

/** Export lines with the article ids renamed in order of appearance (an import makes new ids). */
function normalised(jsonl: string) {
  const names = new Map<string, string>();
  const name = (id: string | null) => (id === null ? null : (names.get(id) ?? (names.set(id, `#${names.size}`), names.get(id)!)));
  return jsonl
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l))
    .map((r) => ({ ...r, morris: { ...r.morris, family_id: name(r.morris.family_id), chosen_id: name(r.morris.chosen_id), rejected_id: name(r.morris.rejected_id) } }));
}

describe('morris feedback', () => {
  it('stats, export (TRL conversational preference JSONL), and import into a fresh data dir round-trip', async () => {
    const a = seeded();
    const stats = JSON.parse(await morris(['feedback', 'stats', '--json'], a));
    expect(stats).toMatchObject({ ratings: { up: 3, down: 2 }, edits: 1, pairs: { total: 4, edit: 1, rating: 2, pick: 1 } });
    expect(await morris(['feedback', 'stats'], a)).toMatch(/preference pairs: 4 \(from edits 1, ratings 2, picks 1\)/);

    const lines = (await morris(['feedback', 'export'], a)).trimEnd().split('\n').map((l) => JSON.parse(l));
    const system = servingSystemPrompt(SYSTEM_PROMPT_FILE).text;
    const roaming = articleMessages(system, 'roaming fees');
    const assistant = (content: string) => [{ role: 'assistant', content }];
    expect(lines).toEqual([
      {
        prompt: articleMessages(system, 'late trains'),
        chosen: assistant('Trains: late, again.\n\nAs ever, "sorry".'),
        rejected: assistant('Trains, late again.\n\nAs ever.'),
        morris: { source: 'edit', family_id: 'g-01', chosen_id: null, rejected_id: 'g-01' },
      },
      { prompt: roaming, chosen: assistant('Roaming, take two.'), rejected: assistant('Roaming, take one.'), morris: { source: 'rating', family_id: 'g-02', chosen_id: 'g-03', rejected_id: 'g-02' } },
      { prompt: roaming, chosen: assistant('Roaming, take two.'), rejected: assistant('Roaming, take three.'), morris: { source: 'pick', family_id: 'g-02', chosen_id: 'g-03', rejected_id: 'g-04' } },
      {
        // The revision's prompt is the whole conversation: the ask, the article revised, the instruction.
        prompt: revisionMessages(system, 'roaming fees', 'Roaming, take two.', 'shorter'),
        chosen: assistant('Roaming, shorter still.'),
        rejected: assistant('Roaming, shorter.'),
        morris: { source: 'rating', family_id: 'g-05', chosen_id: 'g-06', rejected_id: 'g-05' },
      },
    ]);
    expect(lines[0].prompt.map((m: { role: string }) => m.role)).toEqual(['system', 'user']);
    expect(lines[3].prompt.map((m: { role: string }) => m.role)).toEqual(['system', 'user', 'assistant', 'user']);

    const file = path.join(tempDir(), 'pairs.jsonl');
    await morris(['feedback', 'export', '--out', file], a);
    const b = tempDir();
    expect(await morris(['feedback', 'import', file], b)).toMatch(/Imported 4 preference pairs/);
    // The same pairs, from the same rules, over the same groupings of articles.
    expect(JSON.parse(await morris(['feedback', 'stats', '--json'], b)).pairs).toEqual(stats.pairs);
    expect(normalised(await morris(['feedback', 'export'], b))).toEqual(normalised(fs.readFileSync(file, 'utf8')));
  }, 120_000);

  it('pairs from elsewhere (no "morris" field) import as edits, revisions kept as revisions', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'trl.jsonl');
    const system = servingSystemPrompt(SYSTEM_PROMPT_FILE).text;
    const line = (prompt: unknown, chosen: string, rejected: string) => JSON.stringify({ prompt, chosen: [{ role: 'assistant', content: chosen }], rejected: [{ role: 'assistant', content: rejected }] });
    fs.writeFileSync(
      file,
      [
        line(articleMessages(system, 'spectrum'), 'Good.', 'Bad.'),
        line(revisionMessages(system, 'spectrum', 'Long draft.', 'cut it'), 'Cut.', 'Still long.'),
        line(articleMessages(system, 'spectrum'), 'Same.', 'Same.'),
      ].join('\n'),
    );
    expect(await morris(['feedback', 'import', file], dir)).toMatch(/Imported 2 preference pairs \(skipped 1 whose texts are the same\)/);
    const out = (await morris(['feedback', 'export'], dir)).trimEnd().split('\n').map((l) => JSON.parse(l));
    expect(out.map((r) => [r.morris.source, r.prompt.length, r.chosen[0].content])).toEqual([
      ['edit', 2, 'Good.'],
      ['edit', 4, 'Cut.'],
    ]);
    expect(out[1].prompt).toEqual(revisionMessages(system, 'spectrum', 'Long draft.', 'cut it'));
  }, 120_000);

  it("import --columnist attributes the pairs to that voice: its export, stats and training pairs, not the default's", async () => {
    const dir = tempDir();
    const columnists = path.join(dir, 'columnists');
    fs.cpSync(path.join(COLUMNISTS_DIR, 'morris'), path.join(columnists, 'morris'), { recursive: true });
    fs.mkdirSync(path.join(columnists, 'house', 'sources'), { recursive: true });
    fs.writeFileSync(path.join(columnists, 'house', 'columnist.json'), JSON.stringify({ displayName: 'House', attribution: 'the house style' }));
    fs.writeFileSync(path.join(columnists, 'house', 'system-prompt.md'), 'You write in the house style: plain, short, no jokes.\n');
    const env = { MORRIS_COLUMNISTS_DIR: columnists };
    const file = path.join(dir, 'pairs.jsonl');
    const line = (topic: string) => JSON.stringify({ prompt: [{ role: 'user', content: `Write a column about ${topic}.` }], chosen: [{ role: 'assistant', content: `Plain ${topic}.` }], rejected: [{ role: 'assistant', content: `Jokey ${topic}!` }] });
    fs.writeFileSync(file, [line('masts'), line('fibre')].join('\n'));
    expect(await morris(['feedback', 'import', file, '--columnist', 'house'], dir, env)).toMatch(/Imported 2 preference pairs, on house's articles/);
    expect(await morris(['feedback', 'import', file], dir, env)).toMatch(/Imported 2 preference pairs, on morris's articles/);
    expect(JSON.parse(await morris(['feedback', 'stats', '--json', '--columnist', 'house'], dir, env)).pairs.total).toBe(2);
    expect(JSON.parse(await morris(['feedback', 'stats', '--json'], dir, env)).pairs.total).toBe(4);
    // Each voice's export is its own pairs, prompted with its own style guide.
    const house = (await morris(['feedback', 'export', '--columnist', 'house'], dir, env)).trimEnd().split('\n').map((l) => JSON.parse(l));
    expect(house.map((r) => r.prompt[0].content)).toEqual([servingSystemPrompt(path.join(columnists, 'house', 'system-prompt.md')).text, servingSystemPrompt(path.join(columnists, 'house', 'system-prompt.md')).text]);
    expect(house[0].prompt[0].content).toContain('house style');
    const store = openStore(path.join(dir, 'morris.db'));
    try {
      expect(store.prepare(`SELECT columnist, COUNT(*) AS n FROM generations GROUP BY columnist ORDER BY columnist`).all()).toEqual([
        { columnist: 'house', n: 2 },
        { columnist: 'morris', n: 2 },
      ]);
    } finally {
      store.close();
    }
    // An unknown voice is refused before anything is read, with the list of known ones.
    const r = await cli(['feedback', 'import', file, '--columnist', 'nobody'], dir, env);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/No columnist named "nobody"\. Known columnists: house, morris\./);
    expect(JSON.parse(await morris(['feedback', 'stats', '--json'], dir, env)).pairs.total).toBe(4);
  }, 120_000);

  it('import refuses a malformed line and names it, importing nothing', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'bad.jsonl');
    fs.writeFileSync(file, `${JSON.stringify({ prompt: [{ role: 'user', content: 'Write a column about x.' }], chosen: [{ role: 'assistant', content: 'a' }], rejected: [{ role: 'assistant', content: 'b' }] })}\n{"prompt": []}\n`);
    const r = await cli(['feedback', 'import', file], dir);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/line 2: prompt has no user message/);
    expect(r.stderr).toMatch(/TRL conversational preference format/);
    expect(JSON.parse(await morris(['feedback', 'stats', '--json'], dir)).pairs.total).toBe(0);
  }, 120_000);
});
