/**
 * `initTinyModel`: a tiny random Llama or Qwen2 checkpoint in exactly the Hugging Face Hub layout
 * (config.json, model.safetensors, tokenizer.json, tokenizer_config.json with an inline ChatML
 * template, special_tokens_map.json, generation_config.json). It is the model every test and the
 * demo use. The weights depend only on the seed (and dims/dtype); the tokenizer is a byte-level
 * BPE trained here on the corpus (see corpus.ts), so its merges follow that text.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MorrisError, wrapFsError } from '../../errors.ts';
import { SAMPLE_ARCHIVE_ROOT, STYLE_DIR, SYSTEM_PROMPT_FILE } from '../../paths.ts';
import { writeSafetensors } from '../checkpoint/safetensors.ts';
import { buildCorpus } from './corpus.ts';
import { tokenizerJson, trainByteLevelBpe, type BpeModel } from './bpe.ts';
import { TINY_DIMS, tinyConfig, tinyTensors, type TinyArch, type TinyDims, type TinyDtype } from './weights.ts';

export type { TinyArch, TinyDims, TinyDtype } from './weights.ts';
export { TINY_DIMS } from './weights.ts';

export const SPECIAL_TOKENS = ['<|endoftext|>', '<|im_start|>', '<|im_end|>'] as const;

/** ChatML, the format SmolLM2 and Qwen2 instruct models use; inline because transformers.js reads only this. */
export const CHATML_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/**
 * The bundled text the tokenizer learns from when present (see data/): the default columnist's
 * two text files (in the order the old data/style folder listed them), not its whole folder: its settings and source profiles would change the tokenizer, and with
 * it every test's tiny model.
 */
export const DEFAULT_CORPUS_DIRS = [join(STYLE_DIR, 'extra-examples.jsonl'), SYSTEM_PROMPT_FILE, SAMPLE_ARCHIVE_ROOT];

export interface TinyModelOptions {
  arch?: TinyArch;
  seed?: number;
  dtype?: TinyDtype;
  dims?: Partial<TinyDims>;
  /** Tokenizer training text; default: embedded paragraph + DEFAULT_CORPUS_DIRS. */
  corpus?: string;
}

export interface TinyModelInfo {
  readonly dir: string;
  readonly arch: TinyArch;
  readonly dims: TinyDims;
  readonly parameters: number;
  readonly specialIds: Readonly<Record<(typeof SPECIAL_TOKENS)[number], number>>;
}

const bpeCache = new Map<string, BpeModel>();

function trainCached(corpus: string, merges: number): BpeModel {
  const key = `${merges}\u0000${corpus}`;
  let m = bpeCache.get(key);
  if (!m) {
    m = trainByteLevelBpe(corpus, merges);
    bpeCache.set(key, m);
  }
  return m;
}

export function initTinyModel(dir: string, opts: TinyModelOptions = {}): TinyModelInfo {
  const arch = opts.arch ?? 'llama';
  const seed = opts.seed ?? 0;
  const dtype = opts.dtype ?? 'F32';
  const dims: TinyDims = { ...TINY_DIMS, ...opts.dims };
  if (arch !== 'llama' && arch !== 'qwen2') throw new MorrisError('BAD_INPUT', `Unknown tiny architecture "${String(arch)}".`, { hint: 'Use --arch llama or --arch qwen2.' });
  if (!Number.isInteger(seed) || seed < 0) throw new MorrisError('BAD_INPUT', `Seed must be a non-negative integer, got ${seed}.`);
  if (dims.hidden % dims.heads !== 0 || dims.heads % dims.kvHeads !== 0) {
    throw new MorrisError('BAD_INPUT', `Tiny dims invalid: hidden ${dims.hidden} must divide by heads ${dims.heads}, heads by kv heads ${dims.kvHeads}.`);
  }
  const numMerges = dims.vocab - 256 - SPECIAL_TOKENS.length;
  if (numMerges < 0) throw new MorrisError('BAD_INPUT', `Vocabulary ${dims.vocab} is smaller than 256 bytes + ${SPECIAL_TOKENS.length} special tokens.`);

  const bpe = trainCached(opts.corpus ?? buildCorpus(DEFAULT_CORPUS_DIRS), numMerges);
  // Special tokens take the last ids (as in Qwen2), after bytes and merges.
  const [eot, imStart, imEnd] = SPECIAL_TOKENS.map((content, i) => ({ id: bpe.tokens.length + i, content }));
  const ids = { bos: arch === 'llama' ? imStart!.id : null, eos: [imEnd!.id, eot!.id], pad: eot!.id };

  const specialDecoder = Object.fromEntries(
    [eot!, imStart!, imEnd!].map((s) => [String(s.id), { content: s.content, lstrip: false, normalized: false, rstrip: false, single_word: false, special: true }]),
  );
  const tokenizerConfig = {
    add_bos_token: false,
    add_eos_token: false,
    add_prefix_space: false,
    added_tokens_decoder: specialDecoder,
    additional_special_tokens: ['<|im_start|>', '<|im_end|>'],
    bos_token: arch === 'llama' ? '<|im_start|>' : null,
    chat_template: CHATML_TEMPLATE,
    clean_up_tokenization_spaces: false,
    eos_token: '<|im_end|>',
    errors: 'replace',
    model_max_length: dims.maxPositions,
    pad_token: '<|endoftext|>',
    tokenizer_class: arch === 'llama' ? 'GPT2Tokenizer' : 'Qwen2Tokenizer',
    unk_token: null,
  };
  const specialMap = {
    additional_special_tokens: ['<|im_start|>', '<|im_end|>'],
    ...(arch === 'llama' ? { bos_token: '<|im_start|>' } : {}),
    eos_token: '<|im_end|>',
    pad_token: '<|endoftext|>',
  };
  const generationConfig = {
    ...(ids.bos !== null ? { bos_token_id: ids.bos } : {}),
    eos_token_id: ids.eos,
    pad_token_id: ids.pad,
    do_sample: true,
    temperature: 0.8,
    top_p: 0.95,
    top_k: 50,
    repetition_penalty: 1.1,
    transformers_version: '4.46.0',
  };

  const json = (name: string, value: unknown) => writeFileSync(join(dir, name), JSON.stringify(value, null, 2) + '\n');
  try {
    mkdirSync(dir, { recursive: true });
    json('config.json', tinyConfig(arch, dims, ids, dtype));
    json('generation_config.json', generationConfig);
    json('tokenizer.json', tokenizerJson(bpe, [eot!, imStart!, imEnd!]));
    json('tokenizer_config.json', tokenizerConfig);
    json('special_tokens_map.json', specialMap);
    const tensors = tinyTensors(arch, dims, seed, dtype);
    writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
    const parameters = Object.values(tensors).reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0);
    return {
      dir,
      arch,
      dims,
      parameters,
      specialIds: { '<|endoftext|>': eot!.id, '<|im_start|>': imStart!.id, '<|im_end|>': imEnd!.id },
    };
  } catch (e) {
    throw wrapFsError(e, dir);
  }
}
