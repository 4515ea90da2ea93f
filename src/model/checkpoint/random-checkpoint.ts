/**
 * Random Llama-family checkpoints with full control over the variant (GQA, tied/untied, RoPE
 * scaling, biases, sliding window, dtype) for the engine's equivalence tests and the generation
 * benchmark, plus a plain byte-level tokenizer (256 byte tokens, no merges, ChatML specials) so
 * any vocab size can be decoded. The demo/test model with a trained tokenizer is `tiny/`.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LoraModule } from '../graph/llama.ts';
import { moduleShape, peftKey } from './lora.ts';
import { parseDecoderConfig, type DecoderConfig } from './config.ts';
import { encodeFloats, writeSafetensors, type TensorToWrite } from './safetensors.ts';
import { BYTE_TO_CHAR } from '../tiny/bpe.ts';

/** mulberry32: tiny, seedable, identical on every platform. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randomMatrix(rng: () => number, n: number, std: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (rng() * 2 - 1) * std * Math.sqrt(3); // uniform with this std
  return out;
}

export interface RandomModelSpec {
  config: Record<string, unknown>;
  seed: number;
  dtype?: 'F32' | 'F16' | 'BF16';
  /** Std of projection weights (embeddings use 1, norms are 1 ± 0.1). */
  std?: number;
}

export const CHATML = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
export const BYTE_SPECIALS = { endoftext: 256, imStart: 257, imEnd: 258 } as const;

/** Byte-level BPE tokenizer without merges; ids ≥ 259 up to vocabSize are filler tokens `<xN>`. */
export function writeByteTokenizer(dir: string, vocabSize: number): void {
  const vocab: Record<string, number> = {};
  BYTE_TO_CHAR.forEach((c, i) => (vocab[c] = i));
  const specials = ['<|endoftext|>', '<|im_start|>', '<|im_end|>'];
  specials.forEach((s, i) => (vocab[s] = 256 + i));
  for (let i = 259; i < vocabSize; i++) vocab[`<x${i}>`] = i;
  const tokenizer = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: specials.map((content, i) => ({ id: 256 + i, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab, merges: [] },
  };
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tokenizer));
  writeFileSync(
    join(dir, 'tokenizer_config.json'),
    JSON.stringify({ tokenizer_class: 'PreTrainedTokenizerFast', bos_token: null, eos_token: '<|im_end|>', pad_token: '<|endoftext|>', unk_token: null, chat_template: CHATML, model_max_length: 4096 }),
  );
}

/** Writes config.json + model.safetensors (+ byte tokenizer when `tokenizer`) and returns the parsed config. */
export function writeRandomCheckpoint(dir: string, spec: RandomModelSpec, opts: { tokenizer?: boolean } = {}): DecoderConfig {
  mkdirSync(dir, { recursive: true });
  const raw = { architectures: ['LlamaForCausalLM'], hidden_act: 'silu', torch_dtype: { F32: 'float32', F16: 'float16', BF16: 'bfloat16' }[spec.dtype ?? 'F32'], ...spec.config };
  const cfg = parseDecoderConfig(raw);
  const rng = mulberry32(spec.seed);
  const std = spec.std ?? 0.08;
  const dtype = spec.dtype ?? 'F32';
  const tensors: Record<string, TensorToWrite> = {};
  const put = (name: string, shape: number[], values: Float32Array) => (tensors[name] = { dtype, shape, data: encodeFloats(values, dtype) });
  const norm = (n: number) => Float32Array.from({ length: n }, () => 1 + (rng() - 0.5) * 0.2);
  const H = cfg.hiddenSize;
  put('model.embed_tokens.weight', [cfg.vocabSize, H], randomMatrix(rng, cfg.vocabSize * H, 1));
  for (let i = 0; i < cfg.numLayers; i++) {
    const p = `model.layers.${i}.`;
    put(`${p}input_layernorm.weight`, [H], norm(H));
    put(`${p}post_attention_layernorm.weight`, [H], norm(H));
    for (const m of ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const) {
      const { inF, outF } = moduleShape(cfg, m);
      const block = m.startsWith('gate') || m.startsWith('up') || m.startsWith('down') ? 'mlp' : 'self_attn';
      put(`${p}${block}.${m}.weight`, [outF, inF], randomMatrix(rng, outF * inF, std));
      const bias = (m === 'q_proj' || m === 'k_proj' || m === 'v_proj') ? cfg.qkvBias : m === 'o_proj' ? cfg.oBias : cfg.mlpBias;
      if (bias) put(`${p}${block}.${m}.bias`, [outF], randomMatrix(rng, outF, 0.1));
    }
  }
  put('model.norm.weight', [H], norm(H));
  if (!cfg.tieWordEmbeddings) put('lm_head.weight', [cfg.vocabSize, H], randomMatrix(rng, cfg.vocabSize * H, std));
  writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(raw, null, 2));
  if (opts.tokenizer) {
    writeByteTokenizer(dir, cfg.vocabSize);
    writeFileSync(join(dir, 'generation_config.json'), JSON.stringify({ eos_token_id: BYTE_SPECIALS.imEnd }));
  }
  return cfg;
}

/** A random PEFT adapter for `cfg` (B is non-zero so the side path changes the output). */
export function writeRandomAdapter(dir: string, cfg: DecoderConfig, opts: { r: number; alpha: number; targets: readonly LoraModule[]; seed: number; layers?: readonly number[] }): void {
  mkdirSync(dir, { recursive: true });
  const rng = mulberry32(opts.seed);
  const tensors: Record<string, TensorToWrite> = {};
  const layers = opts.layers ?? Array.from({ length: cfg.numLayers }, (_, i) => i);
  for (const layer of layers) {
    for (const m of opts.targets) {
      const { inF, outF } = moduleShape(cfg, m);
      tensors[peftKey(layer, m, 'A')] = { dtype: 'F32', shape: [opts.r, inF], data: randomMatrix(rng, opts.r * inF, 0.1) };
      tensors[peftKey(layer, m, 'B')] = { dtype: 'F32', shape: [outF, opts.r], data: randomMatrix(rng, outF * opts.r, 0.1) };
    }
  }
  writeSafetensors(join(dir, 'adapter_model.safetensors'), tensors, { format: 'pt' });
  writeFileSync(
    join(dir, 'adapter_config.json'),
    JSON.stringify({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r: opts.r, lora_alpha: opts.alpha, lora_dropout: 0, bias: 'none', target_modules: opts.targets, base_model_name_or_path: null }, null, 2),
  );
}
