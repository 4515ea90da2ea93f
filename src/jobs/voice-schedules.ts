/**
 * The scheduler's view of the columnist folders: every voice but the default one (whose chain runs
 * on MORRIS_CRON_*) gets its own schedule from its columnist.json. A folder whose settings do not
 * load is left out with the reason logged; one that loads is checked in full at each tick, so a
 * profile broken later is caught then, and the other voices keep running either way.
 */
import type { Config } from '../config.ts';
import { childLog } from '../log.ts';
import { checkColumnist } from '../columnists/check.ts';
import { DEFAULT_COLUMNIST_NAME, loadAllColumnists } from '../columnists/folder.ts';
import type { VoiceSchedule } from './scheduler.ts';

const log = childLog('scheduler');

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
