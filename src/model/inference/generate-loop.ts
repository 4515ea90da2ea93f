/**
 * transformers.js's generate as the decode loop where it is the real path: ONNX Runtime on a GPU
 * execution provider (CUDA, CoreML, DirectML, WebGPU), whose session setup transformers.js owns
 * (on WebGPU it also keeps the KV cache on the device between steps). It runs the public generate
 * API only, never touching transformers.js's private fields; the token choice is still
 * ours (a logits processor that calls the same `choose` our loop calls and leaves exactly one
 * token standing), so seeded sampling gives the same tokens on either loop.
 */
import {
  AutoModelForCausalLM,
  LogitsProcessor,
  StoppingCriteria,
  Tensor,
  type PreTrainedModel,
} from '@huggingface/transformers';
import type { Generation } from './decode-loop.ts';
import { sessionOptions, type Provider } from './runtime.ts';

/** Picks one token per row with `choose` and masks every other logit, so greedy decoding keeps it. */
class ChooseTokenProcessor extends LogitsProcessor {
  constructor(private readonly choose: Generation['choose']) {
    super();
  }
  override _call(inputIds: bigint[][], logits: Tensor): Tensor {
    const data = logits.data as Float32Array;
    const vocab = logits.dims.at(-1)!;
    for (let row = 0; row < inputIds.length; row++) {
      const slice = data.subarray(row * vocab, (row + 1) * vocab);
      const chosen = this.choose(slice, inputIds[row]!.map(Number));
      slice.fill(-Infinity);
      slice[chosen] = 0;
    }
    return logits;
  }
}

class AbortCriteria extends StoppingCriteria {
  constructor(private readonly isStopped: () => boolean) {
    super();
  }
  override _call(inputIds: readonly unknown[]): boolean[] {
    const stop = this.isStopped();
    return inputIds.map(() => stop);
  }
}

/** The compiled model folder (config, tokenizer, onnx/model.onnx) loaded by transformers.js on `device`. */
export async function loadGenerateModel(dir: string, device: Provider, threads: number): Promise<PreTrainedModel> {
  return (await AutoModelForCausalLM.from_pretrained(dir, { local_files_only: true, device, dtype: 'fp32', session_options: sessionOptions(threads) })) as PreTrainedModel;
}

/**
 * One generation through generate. Its own logits rules (from generation_config.json) run before
 * `choose`, which applies the same rules again: they are masks, so twice is the same as once.
 */
export async function generateLoop(model: PreTrainedModel, g: Generation): Promise<void> {
  const n = g.promptIds.length;
  await model.generate({
    inputs: new Tensor('int64', BigInt64Array.from(g.promptIds, (v) => BigInt(v)), [1, n]),
    attention_mask: new Tensor('int64', new BigInt64Array(n).fill(1n), [1, n]),
    max_new_tokens: g.maxNewTokens,
    do_sample: false,
    repetition_penalty: 1,
    eos_token_id: g.eos.length ? [...g.eos] : undefined,
    logits_processor: [new ChooseTokenProcessor(g.choose)],
    stopping_criteria: [new AbortCriteria(g.isStopped)],
    streamer: g.streamer,
  } as unknown as Parameters<PreTrainedModel['generate']>[0]);
}
