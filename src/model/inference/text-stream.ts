/**
 * Streaming detokenization: generated token ids in, text pieces out as soon as they are whole.
 */
import { BaseStreamer, type PreTrainedTokenizer } from '@huggingface/transformers';

/**
 * Collects generated ids and hands out newly decoded text (held back while a UTF-8 char is
 * incomplete). Each token decodes only a short window, the last few tokens already shown plus the
 * new ones, and emits what the new ones add to it (the incremental detokenization text servers
 * use): decoding everything from the prompt on every token cost O(n) a token, milliseconds per
 * token deep into a long article. The window starts inside the prompt so tokenizers that strip a
 * leading space (Llama's SentencePiece decoder) keep the space between prompt and continuation.
 */
export class TextDeltaStreamer extends BaseStreamer {
  readonly ids: number[] = [];
  private readonly all: number[]; // prompt + generated
  /** all[prefixOffset, readOffset) is the context already shown; all[readOffset, …) is not shown yet. */
  private prefixOffset: number;
  private readOffset: number;
  private promptSkipped = false;
  readonly tokenTimes: number[] = [];
  /** Everything handed out so far, for the fallback below. */
  private emitted = '';
  constructor(
    private readonly tokenizer: PreTrainedTokenizer,
    promptIds: number[],
    private readonly promptText: string,
    private readonly emit: (piece: string) => void,
  ) {
    super();
    this.all = [...promptIds];
    this.readOffset = promptIds.length;
    this.prefixOffset = Math.max(0, promptIds.length - CONTEXT_TOKENS);
  }
  override put(value: bigint[][]): void {
    if (!this.promptSkipped) {
      this.promptSkipped = true; // the first call carries the prompt
      return;
    }
    const id = Number(value[0]![0]!);
    this.ids.push(id);
    this.all.push(id);
    this.tokenTimes.push(performance.now());
    this.flush(false);
  }
  override end(): void {
    this.flush(true);
  }
  private flush(final: boolean): void {
    if (this.readOffset === this.all.length) return;
    const decode = (from: number, to: number) => this.tokenizer.decode(this.all.slice(from, to), { skip_special_tokens: true });
    const shown = decode(this.prefixOffset, this.readOffset);
    const text = decode(this.prefixOffset, this.all.length);
    // A character split across tokens: wait for the rest (a UTF-8 character spans at most 4 byte
    // tokens; after that the bytes are simply invalid and show as U+FFFD).
    if (!final && text.endsWith('\uFFFD') && this.all.length - this.readOffset < 4) return;
    if (text.startsWith(shown)) this.push(text.slice(shown.length));
    else this.pushFromFull(); // a normalizing decoder rewrote the context: diff against the whole text, as a one-off
    this.prefixOffset = this.readOffset;
    this.readOffset = this.all.length;
  }
  private push(piece: string): void {
    if (!piece) return;
    this.emitted += piece;
    this.emit(piece);
  }
  private pushFromFull(): void {
    const full = this.tokenizer.decode(this.all, { skip_special_tokens: true });
    const generated = full.startsWith(this.promptText) ? full.slice(this.promptText.length) : this.tokenizer.decode(this.ids, { skip_special_tokens: true });
    // Text already shown cannot be taken back; what lies past it is shown either way, so nothing is lost.
    this.push(generated.slice(this.emitted.length));
  }
}

/** Tokens of context each window decodes before the new ones (enough for any merge across a boundary). */
const CONTEXT_TOKENS = 5;
