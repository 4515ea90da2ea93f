import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.ts';
import { formatDemoSummary, runDemo } from '../src/demo.ts';
import { openStore } from '../src/store/db.ts';

// The quick start's `npm run demo`, as a library call: every stage must really run and leave
// its product behind.
describe('offline demo', () => {
  it('runs the whole loop and promotes an adapter that then writes the article', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'morris-demo-'));
    const lines: string[] = [];
    let article = '';
    try {
      const s = await runDemo(loadConfig({ LOG_LEVEL: 'warn' }), {
        dir,
        maxNewTokens: 24,
        print: (l) => lines.push(l),
        onArticleText: (t) => (article += t),
      });
      expect(s.stages.map((x) => x.name)).toEqual(['sample archive', 'base model', 'scrape', 'dataset', 'training', 'evaluate + promote', "DPO on readers' pairs", "evaluate DPO (readers' preferences)", 'article']);
      // The bundled feedback: a DPO stage on top of the promoted adapter, judged on held-out pairs.
      expect(s.dpo).toMatchObject({ pairs: 12, against: s.adapterId });
      expect(s.dpo!.accuracy).toBeGreaterThanOrEqual(0);
      expect(s.dpo!.againstAccuracy).toBeGreaterThanOrEqual(0);
      expect(formatDemoSummary(s)).toMatch(/preference accuracy  \d\.\d{3} on held-out pairs vs lora-\S+ \d\.\d{3}; (promoted|NOT promoted: .+)/);
      expect(s.articles).toBeGreaterThanOrEqual(20);
      expect(fs.existsSync(s.datasetFile!)).toBe(true);
      expect(fs.existsSync(path.join(s.adapterDir!, 'adapter_model.safetensors'))).toBe(true);
      expect(s.promoted).toBe(true);
      expect(s.valLoss.adapter!).toBeLessThan(s.valLoss.base!);
      expect(s.article.tokens).toBeGreaterThan(0);
      expect(article.trim().length).toBeGreaterThan(0);
      const db = openStore(s.dbPath);
      const active = db.prepare(`SELECT id FROM adapters WHERE status = 'active'`).get() as { id: string };
      expect(active.id).toBe(s.dpo!.promoted ? s.dpo!.adapterId : s.adapterId);
      const gens = db.prepare('SELECT count(*) AS n FROM job_runs WHERE status = ?').get('succeeded') as { n: number };
      expect(gens.n).toBe(6);
      db.close();
      expect(lines.join('\n')).toMatch(/\[9\/9\] article/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 300_000);
});
