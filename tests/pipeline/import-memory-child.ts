/**
 * Child process for the import memory test: imports FILE into a fresh store under DIR and prints
 * how much the peak resident set grew during the import (after a small warm-up import has loaded
 * every module and prepared every statement).
 */
import fs from 'node:fs';
import path from 'node:path';
import { importDataset } from '../../src/pipeline/dataset/import.ts';
import { openStore } from '../../src/store/db.ts';

const [file, dir] = process.argv.slice(2) as [string, string];
const store = openStore(path.join(dir, 'morris.db'));
const warm = path.join(dir, 'warm.jsonl');
fs.writeFileSync(warm, '{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}]}\n');
importDataset(store, warm, undefined, { outDir: path.join(dir, 'out') });
const before = process.resourceUsage().maxRSS;
const r = importDataset(store, file, undefined, { outDir: path.join(dir, 'out') });
const after = process.resourceUsage().maxRSS;
store.close();
process.stdout.write(JSON.stringify({ growthBytes: (after - before) * 1024, train: r.train, validation: r.validation, rejectedTotal: r.rejectedTotal }) + '\n');
