/** Option parsers shared by the CLI modules (commander calls them with the raw flag value). */
import { InvalidArgumentError } from 'commander';

/** A number flag within [min, max] (an integer when `integer`); anything else is a usage error. */
export function numberOption(name: string, min: number, max: number, integer = false): (v: string) => number {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n))) {
      throw new InvalidArgumentError(`${name} must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}.`);
    }
    return n;
  };
}

/** The `--columnist NAME` flag every per-voice command takes; absent means the default columnist. */
export const COLUMNIST_FLAG = '--columnist <name>';
export const COLUMNIST_FLAG_HELP = 'the voice (a folder in data/columnists; default: morris)';
