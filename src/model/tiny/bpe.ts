/**
 * A byte-level BPE trainer (GPT-2 style) and the Hugging Face `tokenizer.json` it produces.
 *
 * Byte level: text is split with GPT-2's pre-tokenization regex, each piece is turned into UTF-8
 * bytes, and every byte is shown as one printable character (GPT-2's `bytes_to_unicode`, so a
 * space becomes `Ġ`). The base vocabulary is those 256 characters, so any string encodes and
 * decodes back exactly; merges then join the most frequent adjacent pair, one at a time.
 */

/** GPT-2's pre-tokenizer: contractions, letter runs, digit runs, other runs, whitespace. */
export const GPT2_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/** GPT-2's bytes_to_unicode: printable Latin-1 bytes keep their character, the rest move to 256+. */
export const BYTE_TO_CHAR: readonly string[] = (() => {
  const keep: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) keep.push(b);
  for (let b = 0xa1; b <= 0xac; b++) keep.push(b);
  for (let b = 0xae; b <= 0xff; b++) keep.push(b);
  const table: string[] = new Array(256);
  let next = 256;
  for (let b = 0; b < 256; b++) table[b] = String.fromCodePoint(keep.includes(b) ? b : next++);
  return table;
})();

export function toByteLevel(piece: string): string {
  let s = '';
  for (const b of Buffer.from(piece, 'utf8')) s += BYTE_TO_CHAR[b];
  return s;
}

export interface BpeModel {
  /** id → token (byte-level string); ids 0..255 are the single bytes in byte order. */
  readonly tokens: readonly string[];
  /** In rank order; merge i produced token 256 + i. */
  readonly merges: readonly (readonly [string, string])[];
}

/**
 * Learns `numMerges` merges from `text`. Ties go to the pair seen first in id order so the
 * result is a pure function of the text. Throws if the text runs out of pairs first.
 */
export function trainByteLevelBpe(text: string, numMerges: number): BpeModel {
  const counts = new Map<string, number>();
  for (const m of text.matchAll(GPT2_SPLIT)) {
    const w = toByteLevel(m[0]);
    counts.set(w, (counts.get(w) ?? 0) + 1);
  }
  const charId = new Map(BYTE_TO_CHAR.map((c, i) => [c, i]));
  const words: number[][] = [];
  const freq: number[] = [];
  for (const [w, n] of counts) {
    words.push([...w].map((c) => charId.get(c)!));
    freq.push(n);
  }
  const tokens = [...BYTE_TO_CHAR];
  const merges: [string, string][] = [];
  // Pair key a * 2^16 + b: ids stay below 65536 for any vocabulary this trainer is meant for.
  const SHIFT = 65536;
  const pairs = new Map<number, number>();
  const addPairs = (w: number[], n: number) => {
    for (let j = 0; j + 1 < w.length; j++) {
      const k = w[j]! * SHIFT + w[j + 1]!;
      pairs.set(k, (pairs.get(k) ?? 0) + n);
    }
  };
  words.forEach((w, i) => addPairs(w, freq[i]!));
  for (let step = 0; step < numMerges; step++) {
    let bestKey = -1;
    let bestCount = 0;
    for (const [k, n] of pairs) {
      if (n > bestCount || (n === bestCount && k < bestKey)) {
        bestKey = k;
        bestCount = n;
      }
    }
    if (bestKey < 0) throw new Error(`BPE corpus too small: only ${step} of ${numMerges} merges possible.`);
    const a = Math.floor(bestKey / SHIFT);
    const b = bestKey % SHIFT;
    const id = tokens.length;
    tokens.push(tokens[a]! + tokens[b]!);
    merges.push([tokens[a]!, tokens[b]!]);
    // Only words holding the pair change; their pair counts are swapped old → new.
    for (let i = 0; i < words.length; i++) {
      const w = words[i]!;
      let has = false;
      for (let j = 0; j + 1 < w.length && !has; j++) has = w[j] === a && w[j + 1] === b;
      if (!has) continue;
      const out: number[] = [];
      for (let j = 0; j < w.length; j++) {
        if (j + 1 < w.length && w[j] === a && w[j + 1] === b) {
          out.push(id);
          j++;
        } else out.push(w[j]!);
      }
      addPairs(w, -freq[i]!);
      addPairs(out, freq[i]!);
      words[i] = out;
    }
    for (const [k, n] of pairs) if (n <= 0) pairs.delete(k);
  }
  return { tokens, merges };
}

export interface SpecialToken {
  readonly id: number;
  readonly content: string;
}

/** The `tokenizer.json` (Hugging Face tokenizers format) for a byte-level BPE plus special tokens. */
export function tokenizerJson(model: BpeModel, specials: readonly SpecialToken[]): object {
  const vocab: Record<string, number> = {};
  model.tokens.forEach((t, i) => (vocab[t] = i));
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: specials.map((s) => ({
      id: s.id,
      content: s.content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: model.merges.map(([a, b]) => `${a} ${b}`),
    },
  };
}
