#!/usr/bin/env node
/**
 * Builds the native decode kernel (native/ → native/build/Release/morris_native.node), and the
 * read-bandwidth probes bench:generate loads (native/probes.c → morris_probes.node), with
 * node-gyp. Runs on `npm install` / `npm ci`; without a C toolchain it warns and leaves Morris
 * decoding through ONNX Runtime alone (slower on CPU), unless --strict is given
 * (`npm run build:native`), which fails instead.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const strict = process.argv.includes('--strict');
const nativeDir = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'native');

function nodeGyp() {
  // npm hands its bundled node-gyp to lifecycle scripts; outside npm, look next to npm itself.
  const candidates = [process.env.npm_config_node_gyp, path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js')];
  try {
    candidates.push(createRequire(import.meta.url).resolve('node-gyp/bin/node-gyp.js'));
  } catch {
    // not installed locally
  }
  return candidates.find((c) => c && existsSync(c));
}

function fail(message) {
  const text = `morris: the native decode kernel was not built: ${message}\n` +
    'morris: decode will run through ONNX Runtime only (about half the speed on CPU). Install python3, make and a C compiler (Debian: apt-get install -y python3 make g++), then run `npm run build:native`.\n';
  process.stderr.write(text);
  process.exit(strict ? 1 : 0);
}

if (process.platform === 'win32') fail('Windows is not supported by this kernel yet');
if (!['x64'].includes(process.arch)) fail(`the kernel is written for x86-64, this is ${process.arch}`);
const gyp = nodeGyp();
if (!gyp) fail('node-gyp was not found (it ships with npm)');
const args = [gyp, 'rebuild'];
// Offline machines: use the headers installed with Node itself instead of downloading them.
const localNode = path.resolve(path.dirname(process.execPath), '..');
if (existsSync(path.join(localNode, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${localNode}`);
const r = spawnSync(process.execPath, args, { cwd: nativeDir, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
if (r.status !== 0) {
  const tail = `${r.stdout ?? ''}${r.stderr ?? ''}`.split('\n').filter((l) => !l.startsWith('gyp info')).slice(-15).join('\n');
  fail(`node-gyp exited with ${r.status ?? r.signal}:\n${tail}`);
}
const built = path.join('native', 'build', 'Release');
process.stdout.write(`morris: native decode kernel built (${path.join(built, 'morris_native.node')}; bench:generate's read probes in ${path.join(built, 'morris_probes.node')})\n`);
