/**
 * The sweep of temp files at start: `*.tmp-PID` files and folders whose writer is gone are
 * removed; those of live processes (this one, another running one), and everything else, stay.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isPidAlive } from '../../src/pids.ts';
import { sweepStaleTmpFiles, tmpPathFor } from '../../src/store/tmp-files.ts';

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'morris-tmp-sweep-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A PID that was running and has exited (so it is certainly dead, and not reused yet). */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '0']);
  await new Promise((r) => child.once('exit', r));
  return child.pid!;
}

const touch = (rel: string, body = 'x') => {
  const f = path.join(dir, rel);
  fs.mkdirSync(path.dirname(f), { recursive: true });
  fs.writeFileSync(f, body);
  return f;
};

describe('sweepStaleTmpFiles', () => {
  it('removes temp files and folders of dead PIDs and keeps the rest', async () => {
    const dead = await deadPid();
    expect(isPidAlive(dead)).toBe(false);
    const sleeper = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)']);
    try {
      const staleFile = touch(`datasets/ds-1.train.jsonl.tmp-${dead}`);
      const staleDir = path.join(dir, `runs/r1/ckpt.tmp-${dead}`);
      fs.mkdirSync(staleDir, { recursive: true });
      touch(`runs/r1/ckpt.tmp-${dead}/weights.bin`);
      const hidden = touch(`.adapter-a.tmp-${dead}`);
      const mine = touch(`datasets/${path.basename(tmpPathFor('ds-2.jsonl'))}`);
      const running = touch(`datasets/ds-3.jsonl.tmp-${sleeper.pid}`);
      const kept = [touch('datasets/ds-1.train.jsonl'), touch('datasets/notes.tmp'), touch('datasets/ds-4.jsonl.tmp-abc'), mine, running];

      const removed = sweepStaleTmpFiles([dir], { depth: 3 });

      expect(removed.sort()).toEqual([hidden, staleFile, staleDir].sort());
      for (const f of removed) expect(fs.existsSync(f), f).toBe(false);
      for (const f of kept) expect(fs.existsSync(f), f).toBe(true);
    } finally {
      sleeper.kill();
    }
  });

  it('looks only as deep as asked, and skips folders that do not exist', async () => {
    const dead = await deadPid();
    const top = touch(`a.jsonl.tmp-${dead}`);
    const deep = touch(`datasets/b.jsonl.tmp-${dead}`);
    expect(sweepStaleTmpFiles([dir, path.join(dir, 'missing')])).toEqual([top]);
    expect(fs.existsSync(deep)).toBe(true);
  });
});
