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
      expect(s.stages.map((x) => x.name)).toEqual(['sample archive', 'base model', 'scrape', 'dataset', 'training', 'evaluate + promote', "DPO on readers' pairs", "evaluate DPO (readers' preferences)", 'second voice', 'article']);
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
      const morrisActive = s.dpo!.promoted ? s.dpo!.adapterId : s.adapterId;
      // Both voices ran their whole chain (the default one with its DPO stage), each has its own active adapter.
      expect(db.prepare(`SELECT columnist, COUNT(*) AS n FROM job_runs WHERE status = 'succeeded' GROUP BY columnist ORDER BY columnist`).all()).toEqual([
        { columnist: 'lark', n: 4 },
        { columnist: 'morris', n: 6 },
      ]);
      expect(db.prepare(`SELECT columnist, id FROM adapters WHERE status = 'active' ORDER BY columnist`).all()).toEqual([
        { columnist: 'lark', id: s.secondVoice.adapterId },
        { columnist: 'morris', id: morrisActive },
      ]);
      db.close();
      expect(s.secondVoice).toMatchObject({ name: 'lark', articles: 8, promoted: true });
      expect(s.secondVoice.tokens).toBeGreaterThan(0);
      // One base model, both voices' adapters: the two articles were written in the same batch.
      expect(s.secondVoice.together).toBe(2);
      expect(article).toContain('— the same topic, as Penny Lark —');
      expect(lines.join('\n')).toMatch(/\[10\/10\] article/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 300_000);
});
