/**
 * A columnist's `columnist.json`: who the voice is (display name, attribution line) and the
 * settings that differ per voice (retrain threshold, gate margins, chain schedule). Every setting
 * is optional: one left out comes from the process config (MORRIS_RETRAIN_MIN_NEW_EXAMPLES,
 * MORRIS_PROMOTE_MARGIN, MORRIS_CRON_*), so the default columnist with a bare file behaves exactly
 * as the single columnist did before columnists were data.
 */
import { z } from 'zod';
import { CRON_EXPECTED, isFiveFieldCron, type Config } from '../config.ts';

/** Folder names: the same rule as source profile names, so a name is safe in paths and commands. */
export const COLUMNIST_NAME = /^[a-z0-9][a-z0-9-]{0,39}$/;
export const COLUMNIST_NAME_RULE = 'lowercase letters, digits and dashes, starting with a letter or digit, at most 40 characters';

const cron = z.string().refine((s) => s.trim() === 'off' || isFiveFieldCron(s), CRON_EXPECTED);

export const columnistFileSchema = z
  .object({
    /** How people see the voice in lists, the dashboard and the Discord option. */
    displayName: z.string().trim().min(1, 'expected a non-empty name').max(80, 'expected at most 80 characters'),
    /** Who "AI-generated in the style of …" names on every article. */
    attribution: z.string().trim().min(1, 'expected a non-empty line').max(200, 'expected at most 200 characters'),
    description: z.string().default(''),
    retrain: z
      .object({
        /** New examples a rebuilt dataset needs before the chain retrains (MORRIS_RETRAIN_MIN_NEW_EXAMPLES). */
        minNewExamples: z.number().int().min(0).max(1_000_000),
      })
      .partial()
      .strict()
      .default({}),
    gate: z
      .object({
        /** How much lower the candidate's validation loss must be (MORRIS_PROMOTE_MARGIN). */
        margin: z.number().min(0).max(10),
        /** How far the style score may fall (MORRIS_STYLE_TOLERANCE). */
        styleTolerance: z.number().min(0).max(1),
      })
      .partial()
      .strict()
      .default({}),
    /**
     * With MORRIS_BACKEND=openai: the model name the server answers this voice under (vLLM's
     * `--lora-modules NAME=DIR`). The default columnist's is MORRIS_OPENAI_MODEL when this is absent.
     */
    openaiModel: z.string().trim().min(1, 'expected a model name').max(200).optional(),
    /** When this voice's chain runs (MORRIS_CRON_RESCRAPE / _REBUILD / _RETRAIN). */
    schedule: z.object({ rescrape: cron, rebuild: cron, retrain: cron }).partial().strict().default({}),
  })
  .strict();

export type ColumnistFile = z.output<typeof columnistFileSchema>;

/** The settings a columnist runs with: its file's values over the process config's. */
export interface ColumnistSettings {
  retrainMinNewExamples: number;
  promoteMargin: number;
  styleTolerance: number;
  schedule: { rescrape: string; rebuild: string; retrain: string };
}

export function effectiveSettings(file: ColumnistFile, c: Config): ColumnistSettings {
  return {
    retrainMinNewExamples: file.retrain.minNewExamples ?? c.MORRIS_RETRAIN_MIN_NEW_EXAMPLES,
    promoteMargin: file.gate.margin ?? c.MORRIS_PROMOTE_MARGIN,
    styleTolerance: file.gate.styleTolerance ?? c.MORRIS_STYLE_TOLERANCE,
    schedule: {
      rescrape: file.schedule.rescrape ?? c.MORRIS_CRON_RESCRAPE,
      rebuild: file.schedule.rebuild ?? c.MORRIS_CRON_REBUILD,
      retrain: file.schedule.retrain ?? c.MORRIS_CRON_RETRAIN,
    },
  };
}
