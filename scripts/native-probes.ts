/**
 * The read-bandwidth probes (native/probes.c, built as morris_probes.node beside the decode
 * kernel): one-thread read rates with the decode kernel's own vector loads, the memory bound that
 * bench:generate's roofline divides by. A separate addon so the one Morris loads to decode
 * (src/model/inference/native-addon.ts) carries no benchmark code; `npm run build:native` builds both.
 */
import path from 'node:path';
import { loadNativeAddon, NATIVE_BUILD_DIR } from '../src/model/inference/native-addon.ts';

export const NATIVE_PROBES_FILE = path.join(NATIVE_BUILD_DIR, 'morris_probes.node');

export interface NativeProbes {
  /** The instruction set the probes read with: the decode kernel's choice on this CPU (MORRIS_NATIVE_ISA included). */
  isa(): 'avx512' | 'avx2' | 'scalar';
  /** Sum of a Float32Array with the kernel's own loads: one-thread read bandwidth for the roofline. */
  readSum(data: Float32Array): number;
  /** Best one-thread read rates (GB/s), each read starting cold: 4 KiB or huge pages, one stream or two (the gemv's pattern), with and without its prefetch. Needs AVX2 or AVX-512. */
  readBandwidth(mib: number, passes: number): ReadBandwidth;
}

/** readBandwidth's figures (GB/s, each read starting cold), keyed `<4k|huge>.<oneStream|twoStreams>[.prefetch]`. */
export type ReadBandwidth = Record<`${'4k' | 'huge'}.${'oneStream' | 'twoStreams'}${'' | '.prefetch'}`, number> & { hugePages: boolean };

/** What the bench calls: a build from older sources lacks some, and is refused at load. */
const PROBE_FUNCTIONS = ['isa', 'readSum', 'readBandwidth'] as const satisfies readonly (keyof NativeProbes)[];

let cached: { probes: NativeProbes | null; reason: string | null } | null = null;

/** The probes, or null with the reason they are unavailable (not built, out of date, load error). */
export function nativeProbes(): { probes: NativeProbes | null; reason: string | null } {
  if (cached) return cached;
  const { addon, reason } = loadNativeAddon<NativeProbes>(NATIVE_PROBES_FILE, PROBE_FUNCTIONS, 'the native read probes');
  cached = { probes: addon, reason };
  return cached;
}

/** The best of readBandwidth's figures and the access pattern that reached it. */
export function bestRead(r: ReadBandwidth): { gbS: number; pattern: string } {
  let pattern = '';
  let gbS = 0;
  for (const [k, v] of Object.entries(r)) {
    if (typeof v === 'number' && v > gbS) {
      gbS = v;
      pattern = k;
    }
  }
  return { gbS, pattern };
}
