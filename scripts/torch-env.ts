/**
 * Debian's PyTorch as a reference for check:torch and bench:train. Installs python3-torch,
 * python3-numpy and libopenblas0-openmp with apt when missing (root only): without OpenBLAS,
 * Debian's torch falls back to the reference BLAS and is ~40× slower (FACTS.md).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/** Debian's interpreter: python3-torch installs into its dist-packages, not a pyenv one. */
export const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

function hasTorch(): boolean {
  return spawnSync(PYTHON, ['-c', 'import torch, numpy'], { stdio: 'ignore' }).status === 0;
}

function hasOpenBlas(): boolean {
  return spawnSync('dpkg', ['-s', 'libopenblas0-openmp'], { stdio: 'ignore' }).status === 0;
}

export function ensureTorch(): void {
  if (hasTorch() && hasOpenBlas()) return;
  if (process.getuid?.() !== 0) {
    throw new Error('PyTorch reference missing: run as root, or `sudo apt-get install -y python3-torch python3-numpy libopenblas0-openmp`.');
  }
  process.stderr.write('installing python3-torch, python3-numpy, libopenblas0-openmp with apt (a few minutes)…\n');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  for (const args of [['update'], ['install', '-y', 'python3-torch', 'python3-numpy', 'libopenblas0-openmp']]) {
    const r = spawnSync('apt-get', args, { stdio: ['ignore', 'ignore', 'inherit'], env });
    if (r.status !== 0) throw new Error(`apt-get ${args.join(' ')} failed (exit ${r.status}).`);
  }
  if (!hasTorch()) throw new Error(`python3-torch installed but ${PYTHON} cannot import torch.`);
}
