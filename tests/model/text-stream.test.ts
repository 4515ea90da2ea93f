import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { AutoTokenizer, type PreTrainedTokenizer } from '@huggingface/transformers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TextDeltaStreamer } from '../../src/model/inference/text-stream.ts';
import { initTinyModel } from '../../src/model/tiny/index.ts';

const root = mkdtempSync(join(tmpdir(), 'morris-stream-'));
const STORIES = resolve(import.meta.dirname, '../../../shared/models/stories260K');
let tok: PreTrainedTokenizer;
beforeAll(async () => {
  initTinyModel(join(root, 'tiny'), { seed: 3 }); // the project's own byte-level BPE
  tok = await AutoTokenizer.from_pretrained(join(root, 'tiny'), { local_files_only: true });
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** Feeds `ids` one at a time after `promptIds`, as generate does; returns the pieces and how many ids were decoded in all. */
function stream(t: PreTrainedTokenizer, promptIds: number[], ids: number[]): { pieces: string[]; decodedIds: number } {
  let decodedIds = 0;
  const counting = new Proxy(t, {
    get(target, prop, receiver) {
      if (prop === 'decode') return (x: number[], o: unknown) => ((decodedIds += x.length), target.decode(x, o as never));
      return Reflect.get(target, prop, receiver) as unknown;
    },
  });
  const pieces: string[] = [];
  const s = new TextDeltaStreamer(counting, promptIds, t.decode(promptIds, { skip_special_tokens: true }), (p) => pieces.push(p));
  s.put([promptIds.map(BigInt)]);
  for (const id of ids) s.put([[BigInt(id)]]);
  s.end();
  return { pieces, decodedIds };
}

/** GPT-2's byte → character table, the alphabet of a byte-level BPE vocabulary. */
function byteChar(b: number): string {
  const printable = (x: number) => (x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255);
  if (printable(b)) return String.fromCodePoint(b);
  let n = 0;
  for (let x = 0; x < b; x++) if (!printable(x)) n++;
  return String.fromCodePoint(256 + n);
}

/** Byte tokens of a text, one id per UTF-8 byte, so characters split across tokens. */
function byteIds(t: PreTrainedTokenizer, text: string): number[] {
  const bytes = [...Buffer.from(text, 'utf8')];
  const ids = (t as unknown as { convert_tokens_to_ids(tokens: string[]): (number | undefined)[] }).convert_tokens_to_ids(bytes.map(byteChar));
  return ids.map((id, i) => {
    if (id === undefined || id === null) throw new Error(`no byte token for 0x${bytes[i]!.toString(16)}`);
    return id;
  });
}

describe('TextDeltaStreamer', () => {
  it('streams valid text exactly, holding a character back only until its last byte arrives', () => {
    const text = ' Café – naïve “quotes”, 😀 and 日本語.';
    const promptIds = tok.encode('Prompt:', { add_special_tokens: false });
    const ids = tok.encode(text, { add_special_tokens: false });
    const { pieces } = stream(tok, promptIds, ids);
    expect(pieces.join('')).toBe(tok.decode([...promptIds, ...ids], { skip_special_tokens: true }).slice('Prompt:'.length));
    expect(pieces.join('')).toBe(text);
    for (const p of pieces) expect(p).not.toContain('\uFFFD');
  });

  it('bytes of one character in separate tokens come out as that character, once complete', () => {
    const text = '😀日é';
    const ids = byteIds(tok, text);
    const decoded = tok.decode(ids, { skip_special_tokens: true });
    if (decoded !== text) return expect.fail(`the tiny tokenizer does not round-trip single bytes (${JSON.stringify(decoded)})`);
    const { pieces } = stream(tok, tok.encode('x', { add_special_tokens: false }), ids);
    expect(pieces).toEqual(['😀', '日', 'é']);
  });

  it('invalid bytes show as U+FFFD where a whole decode shows them, and the text after them still streams', () => {
    const ids = [...tok.encode('A', { add_special_tokens: false }), ...byteIds(tok, 'é').slice(0, 1), ...tok.encode('BC', { add_special_tokens: false })];
    const { pieces } = stream(tok, tok.encode('x', { add_special_tokens: false }), ids);
    expect(pieces.join('')).toBe(tok.decode(ids, { skip_special_tokens: true }));
    expect(pieces.join('')).toBe('A\uFFFDBC');
  });

  it('decodes a bounded window per token: 2000 tokens cost O(n) decoded ids, not O(n²)', () => {
    const promptIds = tok.encode('The column begins.', { add_special_tokens: false });
    const ids = Array.from({ length: 2000 }, (_, i) => tok.encode(` word${i % 10}`, { add_special_tokens: false })).flat();
    const { pieces, decodedIds } = stream(tok, promptIds, ids);
    expect(pieces.join('')).toBe(tok.decode([...promptIds, ...ids], { skip_special_tokens: true }).slice('The column begins.'.length));
    expect(decodedIds).toBeLessThan(ids.length * 20); // a whole decode every token would be about ids.length² / 2
  });

  it.skipIf(!existsSync(join(STORIES, 'tokenizer.json')))('keeps the space a SentencePiece decoder strips at the start (stories260K)', async () => {
    const sp = await AutoTokenizer.from_pretrained(STORIES, { local_files_only: true });
    const promptIds = sp.encode('Once upon a time');
    const ids = sp.encode('Once upon a time there was a little girl named Lily.').slice(promptIds.length);
    const { pieces } = stream(sp, promptIds, ids);
    expect(pieces.join('')).toBe(' there was a little girl named Lily.');
  });
});
