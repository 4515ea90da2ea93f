import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MorrisError } from '../../src/errors.ts';
import {
  encodeFloats, floatToBf16, floatToHalf, halfToFloat, readCheckpointTensors, readSafetensorsHeader, readTensorF32, writeSafetensors,
} from '../../src/model/checkpoint/safetensors.ts';

const root = mkdtempSync(join(tmpdir(), 'morris-st-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function errorOf(f: () => unknown): MorrisError {
  try {
    f();
  } catch (e) {
    if (e instanceof MorrisError) return e;
    throw e;
  }
  throw new Error('expected a MorrisError');
}

describe('safetensors', () => {
  const values = Float32Array.from([0, 1, -2.5, 3.140625, 65504, -1e-3]);

  it('round-trips F32/F16/BF16/I64 with absolute offsets and metadata', () => {
    const file = join(root, 'a.safetensors');
    writeSafetensors(file, {
      f32: { dtype: 'F32', shape: [2, 3], data: values },
      f16: { dtype: 'F16', shape: [6], data: encodeFloats(values, 'F16') },
      bf16: { dtype: 'BF16', shape: [3, 2], data: encodeFloats(values, 'BF16') },
      ids: { dtype: 'I64', shape: [2], data: BigInt64Array.from([7n, -1n]) },
    }, { format: 'pt' });
    const h = readSafetensorsHeader(file);
    expect(h.metadata).toEqual({ format: 'pt' });
    expect(h.tensors.get('bf16')!.shape).toEqual([3, 2]);
    expect(Array.from(readTensorF32(h.tensors.get('f32')!))).toEqual(Array.from(values));
    const f16 = readTensorF32(h.tensors.get('f16')!);
    const bf16 = readTensorF32(h.tensors.get('bf16')!);
    values.forEach((v, i) => {
      expect(Math.abs(f16[i]! - v)).toBeLessThanOrEqual(Math.abs(v) * 2 ** -11 + 1e-7);
      expect(Math.abs(bf16[i]! - v)).toBeLessThanOrEqual(Math.abs(v) * 2 ** -8);
    });
    expect(h.tensors.get('f32')!.offset % 8).toBe(0); // data region starts aligned
  });

  it('converts halves exactly for representable values and rounds to nearest even', () => {
    for (const v of [0, 1, -2, 0.5, 65504, 2 ** -14, 2 ** -24]) expect(halfToFloat(floatToHalf(v))).toBe(v);
    expect(halfToFloat(floatToHalf(1 + 2 ** -11))).toBe(1); // tie → even
    expect(floatToBf16(1)).toBe(0x3f80);
  });

  it('reads sharded checkpoints through model.safetensors.index.json', () => {
    const dir = join(root, 'sharded');
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir);
    writeSafetensors(join(dir, 'model-00001-of-00002.safetensors'), { a: { dtype: 'F32', shape: [1], data: Float32Array.of(1) } });
    writeSafetensors(join(dir, 'model-00002-of-00002.safetensors'), { b: { dtype: 'F32', shape: [1], data: Float32Array.of(2) } });
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { a: 'model-00001-of-00002.safetensors', b: 'model-00002-of-00002.safetensors' } }));
    const t = readCheckpointTensors(dir);
    expect(readTensorF32(t.get('b')!)[0]).toBe(2);
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { a: '../x.safetensors' } }));
    expect(errorOf(() => readCheckpointTensors(dir)).code).toBe('MODEL_INVALID');
  });

  it('corrupt headers are MODEL_INVALID naming the problem; a missing file is MODEL_MISSING', () => {
    const cases: [string, Buffer][] = [];
    const withHeader = (json: string, extra = 0) => {
      const h = Buffer.from(json);
      const b = Buffer.alloc(8 + h.length + extra);
      b.writeBigUInt64LE(BigInt(h.length));
      h.copy(b, 8);
      return b;
    };
    cases.push(['only 3 bytes', Buffer.from([1, 2, 3])]);
    const huge = Buffer.alloc(16);
    huge.writeBigUInt64LE(1n << 40n);
    cases.push(['header length', huge]);
    cases.push(['not valid JSON', withHeader('{"a": ')]);
    cases.push(['unknown dtype', withHeader('{"a":{"dtype":"Q9","shape":[1],"data_offsets":[0,4]}}', 4)]);
    cases.push(['spans', withHeader('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}', 4)]);
    cases.push(['past the end', withHeader('{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}', 4)]);
    for (const [why, bytes] of cases) {
      const file = join(root, 'bad.safetensors');
      writeFileSync(file, bytes);
      const e = errorOf(() => readSafetensorsHeader(file));
      expect(e.code, why).toBe('MODEL_INVALID');
      expect(e.message).toContain(why);
    }
    expect(errorOf(() => readSafetensorsHeader(join(root, 'none.safetensors'))).code).toBe('MODEL_MISSING');
    expect(errorOf(() => readCheckpointTensors(join(root, 'sharded-missing'))).code).toBe('MODEL_MISSING');
  });
});
