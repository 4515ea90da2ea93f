/** The figures `morris dataset stats` shows of a stored dataset: counts by split and kind, token lengths. */
import type { Store } from '../../store/db.ts';
import { exampleFigures, getDataset } from '../../store/datasets.ts';

export interface DatasetStats {
  id: string;
  origin: string;
  createdAt: string;
  examples: number;
  bySplit: { train: number; validation: number };
  byKind: Record<string, number>;
  articles: number;
  tokens: { total: number; min: number; max: number; mean: number; p50: number; p95: number } | null;
  /** [upper bound, count] per length bucket. */
  histogram: { upTo: number; count: number }[];
  build: unknown;
}

export function datasetStats(store: Store, id: string): DatasetStats {
  const row = getDataset(store, id);
  // Only what the figures need: the messages themselves can run to hundreds of megabytes.
  const ex = exampleFigures(store, id);
  const byKind: Record<string, number> = {};
  for (const e of ex) byKind[e.kind] = (byKind[e.kind] ?? 0) + 1;
  const lens = ex.map((e) => e.n_tokens).filter((n): n is number => n !== null).sort((a, b) => a - b);
  const q = (p: number) => lens[Math.min(lens.length - 1, Math.floor(p * lens.length))];
  return {
    id,
    origin: row.origin,
    createdAt: row.created_at,
    examples: ex.length,
    bySplit: { train: ex.filter((e) => e.split === 'train').length, validation: ex.filter((e) => e.split === 'validation').length },
    byKind,
    articles: new Set(ex.map((e) => e.article_id).filter((x) => x !== null)).size,
    tokens: lens.length
      ? {
          total: lens.reduce((s, n) => s + n, 0),
          min: lens[0],
          max: lens[lens.length - 1],
          mean: Math.round(lens.reduce((s, n) => s + n, 0) / lens.length),
          p50: q(0.5),
          p95: q(0.95),
        }
      : null,
    histogram: histogram(lens),
    build: JSON.parse(row.stats),
  };
}

/** Ten equal-width buckets with a round width (1, 2 or 5 × 10^k tokens) covering 0..max. */
export function histogram(lens: number[]): { upTo: number; count: number }[] {
  if (!lens.length) return [];
  const max = Math.max(...lens);
  const raw = Math.max(1, max / 10);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const width = [1, 2, 5, 10].map((m) => m * mag).find((w) => w >= raw) as number;
  const out = Array.from({ length: Math.ceil(max / width) || 1 }, (_, i) => ({ upTo: (i + 1) * width, count: 0 }));
  for (const n of lens) out[Math.min(out.length - 1, Math.max(0, Math.ceil(n / width) - 1))].count++;
  return out;
}
