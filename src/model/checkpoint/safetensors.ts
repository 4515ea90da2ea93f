/**
 * safetensors files: header parsing (validated), tensor lookup across single or sharded
 * checkpoints, reading tensor data as float32, and writing (temp file + rename).
 *
 * Layout: u64 little-endian header length N, N bytes of JSON
 * `{ name: { dtype, shape, data_offsets: [begin, end] }, __metadata__?: {...} }`, then the data;
 * offsets are relative to the first byte after the header. Weights are never copied by the
 * graph compiler: it only needs `offset`/`length` (absolute in the file) to point ONNX
 * initializers at them as external data.
 */
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { MorrisError, wrapFsError } from '../../errors.ts';

export type SafetensorsDtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

export const DTYPE_BYTES: Readonly<Record<SafetensorsDtype, number>> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

export interface TensorEntry {
  readonly name: string;
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
  /** Absolute path of the file holding the data. */
  readonly file: string;
  /** Absolute byte offset of the data in `file` (8 + header length + data_offsets[0]). */
  readonly offset: number;
  readonly length: number;
}

export interface SafetensorsHeader {
  readonly file: string;
  readonly metadata: Readonly<Record<string, string>>;
  readonly tensors: ReadonlyMap<string, TensorEntry>;
}

/** Upper bound for the JSON header: real ones are a few hundred kB even for 70B models. */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

function invalid(file: string, why: string, cause?: unknown): MorrisError {
  return new MorrisError('MODEL_INVALID', `Corrupt safetensors file ${file}: ${why}.`, {
    hint: 'The file is damaged or not a safetensors file; download or export it again.',
    cause,
  });
}

export function readSafetensorsHeader(file: string): SafetensorsHeader {
  if (!existsSync(file)) {
    throw new MorrisError('MODEL_MISSING', `Missing weights file ${file}.`, {
      hint: 'Check the model folder; pull the model again if files are missing.',
    });
  }
  const fd = openSync(file, 'r');
  try {
    const size = fstatSync(fd).size;
    if (size < 8) throw invalid(file, `only ${size} bytes`);
    const lenBuf = Buffer.alloc(8);
    readSync(fd, lenBuf, 0, 8, 0);
    const headerLen = Number(lenBuf.readBigUInt64LE(0));
    if (headerLen < 2 || headerLen > MAX_HEADER_BYTES || 8 + headerLen > size) {
      throw invalid(file, `header length ${headerLen} does not fit a ${size}-byte file`);
    }
    const headerBuf = Buffer.alloc(headerLen);
    readSync(fd, headerBuf, 0, headerLen, 8);
    let json: unknown;
    try {
      json = JSON.parse(headerBuf.toString('utf8'));
    } catch (e) {
      throw invalid(file, 'header is not valid JSON', e);
    }
    if (typeof json !== 'object' || json === null || Array.isArray(json)) throw invalid(file, 'header is not an object');
    const dataStart = 8 + headerLen;
    const dataLen = size - dataStart;
    const tensors = new Map<string, TensorEntry>();
    let metadata: Record<string, string> = {};
    for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
      if (name === '__metadata__') {
        metadata = (raw ?? {}) as Record<string, string>;
        continue;
      }
      const r = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      if (typeof r !== 'object' || r === null) throw invalid(file, `entry ${name} is not an object`);
      const dtype = r.dtype as SafetensorsDtype;
      if (typeof dtype !== 'string' || !(dtype in DTYPE_BYTES)) throw invalid(file, `tensor ${name} has unknown dtype ${String(r.dtype)}`);
      const shape = r.shape;
      if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) throw invalid(file, `tensor ${name} has a bad shape`);
      const offs = r.data_offsets;
      if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isInteger(o) && o >= 0)) {
        throw invalid(file, `tensor ${name} has bad data_offsets`);
      }
      const [begin, end] = offs as [number, number];
      const expected = (shape as number[]).reduce((a, b) => a * b, 1) * DTYPE_BYTES[dtype];
      if (end < begin || end - begin !== expected) throw invalid(file, `tensor ${name} spans ${end - begin} bytes, expected ${expected}`);
      if (end > dataLen) throw invalid(file, `tensor ${name} ends past the end of the file`);
      tensors.set(name, { name, dtype, shape: shape as number[], file, offset: dataStart + begin, length: end - begin });
    }
    return { file, metadata, tensors };
  } finally {
    closeSync(fd);
  }
}

/**
 * All tensors of a checkpoint folder: `model.safetensors`, or the shards listed in
 * `model.safetensors.index.json`.
 */
export function readCheckpointTensors(dir: string): Map<string, TensorEntry> {
  const index = join(dir, 'model.safetensors.index.json');
  const single = join(dir, 'model.safetensors');
  if (existsSync(index)) {
    let weightMap: Record<string, string>;
    try {
      weightMap = (JSON.parse(readFileSync(index, 'utf8')) as { weight_map: Record<string, string> }).weight_map;
      if (typeof weightMap !== 'object' || weightMap === null) throw new Error('no weight_map');
    } catch (e) {
      throw new MorrisError('MODEL_INVALID', `Bad shard index ${index}.`, { hint: 'Download the model again.', cause: e });
    }
    const out = new Map<string, TensorEntry>();
    for (const shard of new Set(Object.values(weightMap))) {
      if (basename(shard) !== shard) throw new MorrisError('MODEL_INVALID', `Shard path ${shard} in ${index} leaves the model folder.`);
      for (const [k, v] of readSafetensorsHeader(join(dir, shard)).tensors) out.set(k, v);
    }
    for (const name of Object.keys(weightMap)) {
      if (!out.has(name)) throw new MorrisError('MODEL_INVALID', `Tensor ${name} listed in ${index} is not in its shard.`);
    }
    return out;
  }
  if (existsSync(single)) return new Map(readSafetensorsHeader(single).tensors);
  throw new MorrisError('MODEL_MISSING', `No weights in ${dir}: neither model.safetensors nor model.safetensors.index.json.`, {
    hint: 'Point --model at a Hugging Face checkpoint folder (safetensors weights), or pull one with `morris model pull`.',
  });
}

function readBytes(entry: TensorEntry): Buffer {
  const fd = openSync(entry.file, 'r');
  try {
    const buf = Buffer.alloc(entry.length);
    let done = 0;
    while (done < entry.length) {
      const n = readSync(fd, buf, done, entry.length - done, entry.offset + done);
      if (n === 0) throw invalid(entry.file, `short read for ${entry.name}`);
      done += n;
    }
    return buf;
  } finally {
    closeSync(fd);
  }
}

/** IEEE half → float. */
export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** float → IEEE half, round to nearest even. */
export function floatToHalf(v: number): number {
  f32Scratch[0] = v;
  const x = u32Scratch[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  return sign | half;
}

/** float → bfloat16 bits, round to nearest even. */
export function floatToBf16(v: number): number {
  f32Scratch[0] = v;
  const x = u32Scratch[0]!;
  if ((x & 0x7f800000) === 0x7f800000 && x & 0x7fffff) return 0x7fc0;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** Reads a floating-point tensor as float32 (converting f16/bf16/f64). */
export function readTensorF32(entry: TensorEntry): Float32Array {
  const buf = readBytes(entry);
  const n = entry.length / DTYPE_BYTES[entry.dtype];
  const out = new Float32Array(n);
  switch (entry.dtype) {
    case 'F32':
      out.set(new Float32Array(buf.buffer, buf.byteOffset, n));
      return out;
    case 'F64':
      for (let i = 0; i < n; i++) out[i] = buf.readDoubleLE(i * 8);
      return out;
    case 'F16':
      for (let i = 0; i < n; i++) out[i] = halfToFloat(buf.readUInt16LE(i * 2));
      return out;
    case 'BF16': {
      const u = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) u[i] = buf.readUInt16LE(i * 2) << 16;
      return out;
    }
    default:
      throw new MorrisError('MODEL_UNSUPPORTED', `Tensor ${entry.name} has dtype ${entry.dtype}, expected a float type.`);
  }
}

export type TensorData = Float32Array | Float64Array | Uint16Array | BigInt64Array | Int32Array | Int8Array | Uint8Array;

export interface TensorToWrite {
  dtype: SafetensorsDtype;
  shape: readonly number[];
  /** Raw element data; F16/BF16 are given as Uint16Array bit patterns. */
  data: TensorData;
}

/** Converts float32 values to the bit patterns of `dtype` (for writing F16/BF16 tensors). */
export function encodeFloats(values: Float32Array, dtype: 'F32' | 'F16' | 'BF16'): TensorData {
  if (dtype === 'F32') return values;
  const out = new Uint16Array(values.length);
  const conv = dtype === 'F16' ? floatToHalf : floatToBf16;
  for (let i = 0; i < values.length; i++) out[i] = conv(values[i]!);
  return out;
}

/**
 * Writes a safetensors file atomically (temp file in the same folder, then rename), tensors in
 * the given order, data starting 8-byte aligned as the reference implementation does.
 */
export function writeSafetensors(file: string, tensors: Record<string, TensorToWrite>, metadata?: Record<string, string>): void {
  const specs = Object.entries(tensors).map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape }));
  writeSafetensorsStreaming(file, specs, (name) => tensors[name]!.data, metadata);
}

/**
 * Same, but asks for each tensor's data only when it is written, so a merged 7B model never has
 * to be in memory at once.
 */
export function writeSafetensorsStreaming(
  file: string,
  specs: readonly { name: string; dtype: SafetensorsDtype; shape: readonly number[] }[],
  data: (name: string) => TensorData,
  metadata?: Record<string, string>,
): void {
  const header: Record<string, unknown> = {};
  if (metadata) header['__metadata__'] = metadata;
  let offset = 0;
  const sizes = new Map<string, number>();
  for (const t of specs) {
    const bytes = t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype];
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    sizes.set(t.name, bytes);
    offset += bytes;
  }
  const json = JSON.stringify(header);
  const rawLen = Buffer.byteLength(json, 'utf8');
  const headerBytes = Buffer.from(json + ' '.repeat((8 - ((rawLen + 8) % 8)) % 8), 'utf8'); // data starts 8-byte aligned
  const lenBuf = Buffer.alloc(8);
  lenBuf.writeBigUInt64LE(BigInt(headerBytes.length));
  const tmp = join(dirname(file), `.${basename(file)}.${process.pid}.tmp`);
  try {
    const fd = openSync(tmp, 'w');
    try {
      writeSync(fd, lenBuf);
      writeSync(fd, headerBytes);
      for (const t of specs) {
        const d = data(t.name);
        if (d.byteLength !== sizes.get(t.name)) {
          throw new MorrisError('INTERNAL', `Tensor ${t.name}: ${d.byteLength} bytes of data for shape [${t.shape.join(',')}] ${t.dtype}.`);
        }
        writeSync(fd, new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
      }
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw wrapFsError(e, file);
  }
}
