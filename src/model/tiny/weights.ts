/**
 * Tiny random Llama/Qwen2 checkpoints: the config.json and the tensors, with Hugging Face names
 * and [out, in] layouts, drawn from a seeded generator so the same seed gives the same bytes.
 */
import type { TensorToWrite } from '../checkpoint/safetensors.ts';
import { encodeFloats } from '../checkpoint/safetensors.ts';
import { mulberry32 } from '../checkpoint/random-checkpoint.ts';

export type TinyArch = 'llama' | 'qwen2';
export type TinyDtype = 'F32' | 'F16' | 'BF16';

export interface TinyDims {
  readonly hidden: number;
  readonly intermediate: number;
  readonly layers: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly vocab: number;
  readonly maxPositions: number;
}

export const TINY_DIMS: TinyDims = {
  hidden: 64,
  intermediate: 128,
  layers: 2,
  heads: 4,
  kvHeads: 2,
  vocab: 1024,
  maxPositions: 2048,
};

function normalFill(rand: () => number, n: number, std: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    // Box-Muller; 1 - u keeps the log argument in (0, 1].
    const r = Math.sqrt(-2 * Math.log(1 - rand())) * std;
    const t = 2 * Math.PI * rand();
    out[i] = r * Math.cos(t);
    if (i + 1 < n) out[i + 1] = r * Math.sin(t);
  }
  return out;
}

export interface TokenIds {
  readonly bos: number | null;
  readonly eos: readonly number[];
  readonly pad: number;
}

/** config.json for the architecture, as transformers writes it. */
export function tinyConfig(arch: TinyArch, dims: TinyDims, ids: TokenIds, dtype: TinyDtype): Record<string, unknown> {
  const torchDtype = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' }[dtype];
  const common = {
    hidden_size: dims.hidden,
    intermediate_size: dims.intermediate,
    num_hidden_layers: dims.layers,
    num_attention_heads: dims.heads,
    num_key_value_heads: dims.kvHeads,
    head_dim: dims.hidden / dims.heads,
    vocab_size: dims.vocab,
    max_position_embeddings: dims.maxPositions,
    hidden_act: 'silu',
    initializer_range: 0.02,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    rope_scaling: null,
    attention_dropout: 0,
    bos_token_id: ids.bos,
    eos_token_id: ids.eos.length === 1 ? ids.eos[0] : ids.eos,
    pad_token_id: ids.pad,
    torch_dtype: torchDtype,
    transformers_version: '4.46.0',
    use_cache: true,
  };
  if (arch === 'llama') {
    // Untied head, like Llama 2/3; the qwen2 variant covers tied embeddings.
    return { architectures: ['LlamaForCausalLM'], model_type: 'llama', ...common, attention_bias: false, mlp_bias: false, pretraining_tp: 1, tie_word_embeddings: false };
  }
  return {
    architectures: ['Qwen2ForCausalLM'],
    model_type: 'qwen2',
    ...common,
    tie_word_embeddings: true,
    use_sliding_window: false,
    sliding_window: dims.maxPositions,
    max_window_layers: dims.layers,
  };
}

/** Random weights: N(0, 0.02) matrices (HF's initializer_range), RMSNorm weights at 1. */
export function tinyTensors(arch: TinyArch, dims: TinyDims, seed: number, dtype: TinyDtype): Record<string, TensorToWrite> {
  const rand = mulberry32(seed);
  const headDim = dims.hidden / dims.heads;
  const kvDim = dims.kvHeads * headDim;
  const out: Record<string, TensorToWrite> = {};
  const put = (name: string, shape: number[], values: Float32Array) => {
    out[name] = { dtype, shape, data: encodeFloats(values, dtype) };
  };
  const matrix = (name: string, rows: number, cols: number) => put(name, [rows, cols], normalFill(rand, rows * cols, 0.02));
  const ones = (name: string, n: number) => put(name, [n], new Float32Array(n).fill(1));

  matrix('model.embed_tokens.weight', dims.vocab, dims.hidden);
  for (let i = 0; i < dims.layers; i++) {
    const p = `model.layers.${i}`;
    ones(`${p}.input_layernorm.weight`, dims.hidden);
    matrix(`${p}.self_attn.q_proj.weight`, dims.hidden, dims.hidden);
    matrix(`${p}.self_attn.k_proj.weight`, kvDim, dims.hidden);
    matrix(`${p}.self_attn.v_proj.weight`, kvDim, dims.hidden);
    if (arch === 'qwen2') {
      // Qwen2 is the variant with q/k/v biases; larger than init so the test sees them.
      put(`${p}.self_attn.q_proj.bias`, [dims.hidden], normalFill(rand, dims.hidden, 0.1));
      put(`${p}.self_attn.k_proj.bias`, [kvDim], normalFill(rand, kvDim, 0.1));
      put(`${p}.self_attn.v_proj.bias`, [kvDim], normalFill(rand, kvDim, 0.1));
    }
    matrix(`${p}.self_attn.o_proj.weight`, dims.hidden, dims.hidden);
    ones(`${p}.post_attention_layernorm.weight`, dims.hidden);
    matrix(`${p}.mlp.gate_proj.weight`, dims.intermediate, dims.hidden);
    matrix(`${p}.mlp.up_proj.weight`, dims.intermediate, dims.hidden);
    matrix(`${p}.mlp.down_proj.weight`, dims.hidden, dims.intermediate);
  }
  ones('model.norm.weight', dims.hidden);
  if (arch === 'llama') matrix('lm_head.weight', dims.vocab, dims.hidden);
  return out;
}
