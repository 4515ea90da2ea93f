/**
 * The scheduler's view of the columnist folders: every voice but the default one (whose chain runs
 * on MORRIS_CRON_*) gets its own schedule from its columnist.json. A folder whose settings do not
 * load is left out with the reason logged; one that loads is checked in full at each tick, so a
 * profile broken later is caught then, and the other voices keep running either way.
 */
import type { Config } from '../config.ts';
import { childLog } from '../log.ts';
import { checkColumnist } from '../columnists/check.ts';
import { DEFAULT_COLUMNIST_NAME, loadAllColumnists, resolveColumnist } from '../columnists/folder.ts';
import { isMorrisError } from '../errors.ts';
import type { ScheduleSpec, VoiceSchedule } from './scheduler.ts';

const log = childLog('scheduler');

/**
 * The default columnist's crons and retrain threshold: its columnist.json over MORRIS_CRON_* and
 * MORRIS_RETRAIN_MIN_NEW_EXAMPLES (the same values unless the file sets them).
 */
export function withDefaultVoice(spec: ScheduleSpec, config: Config): ScheduleSpec {
  try {
    const c = resolveColumnist(undefined, config);
    return { ...spec, crons: c.settings.schedule, minNewExamples: c.settings.retrainMinNewExamples };
  } catch (e) {
    if (!isMorrisError(e)) throw e;
    log.warn({ columnist: DEFAULT_COLUMNIST_NAME, reason: e.message }, 'default columnist folder does not load: its chain runs on MORRIS_CRON_*');
    return spec;
  }
}

export function voiceSchedules(config: Config): VoiceSchedule[] {
  const { columnists, broken } = loadAllColumnists(config);
  for (const b of broken) log.warn({ columnist: b.name, reason: b.error.message }, 'columnist not scheduled: its folder does not load');
  return columnists
    .filter((c) => c.name !== DEFAULT_COLUMNIST_NAME)
    .map((c) => ({
      columnist: c.name,
      crons: c.settings.schedule,
      minNewExamples: c.settings.retrainMinNewExamples,
      problem: () => {
        const r = checkColumnist(c.name, config);
        return r.ok ? null : r.problems.join('; ');
      },
    }));
}
