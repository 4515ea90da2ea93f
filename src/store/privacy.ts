/**
 * Deleting one person's data (`morris privacy delete`, the bots' `forget`). Only orchestration:
 * the SQL lives with each table's owner (generations.ts, feedback.ts, db.ts for the audit row),
 * and this module runs them in one transaction so a crash never leaves half a person behind.
 *
 * What goes: the generations the person asked for, the signals they gave (on anyone's article),
 * every signal and platform-message link on their articles. Preference pairs are derived from
 * those rows, so they go with them. What stays: someone else's regeneration of the person's
 * article belongs to whoever asked for it; it is kept with its own feedback, and only its
 * parent link to the deleted article is cleared (so it starts a family of its own).
 */
import { MorrisError } from '../errors.ts';
import { audit, type Store } from './db.ts';
import { countPersonFeedback, deletePersonFeedback } from './feedback.ts';
import { deleteGenerations, generationIdsOf, regenerationsByOthers, type PersonRef } from './generations.ts';

export const PRIVACY_PLATFORMS = ['slack', 'discord', 'web'] as const;
export type PrivacyPlatform = (typeof PRIVACY_PLATFORMS)[number];

export interface ForgetCounts {
  generations: number;
  feedbackGiven: number;
  feedbackOnTheirArticles: number;
  messageLinks: number;
  /** Other people's regenerations of the person's articles: kept, parent link cleared. */
  regenerationsUnlinked: number;
}

/** Checks a platform and user id given by a person (CLI flags, an admin command's words). */
export function parsePerson(platform: string | undefined, userId: string | undefined): PersonRef {
  const p = (platform ?? '').toLowerCase();
  if (!(PRIVACY_PLATFORMS as readonly string[]).includes(p)) {
    throw new MorrisError('BAD_INPUT', `Unknown platform "${platform ?? ''}".`, { hint: `Use one of ${PRIVACY_PLATFORMS.join(', ')}.` });
  }
  const id = (userId ?? '').trim();
  if (!id || id.length > 200 || /\s/.test(id)) {
    throw new MorrisError('BAD_INPUT', 'A user id is needed (one word, as the platform shows it).', { hint: 'e.g. U024BE7LH on Slack, a numeric snowflake on Discord.' });
  }
  return { platform: p, userId: id };
}

/** What forgetPerson would delete, without deleting anything. */
export function countPersonData(store: Store, person: PersonRef): ForgetCounts {
  const ids = generationIdsOf(store, person);
  const f = countPersonFeedback(store, person, ids);
  return {
    generations: ids.length,
    feedbackGiven: f.given,
    feedbackOnTheirArticles: f.onTheirArticles,
    messageLinks: f.messages,
    regenerationsUnlinked: regenerationsByOthers(store, ids),
  };
}

/**
 * Deletes the person's data and writes the audit row (who did it, whose data, the counts) in the
 * same transaction, so the log never claims a deletion that rolled back.
 */
export function forgetPerson(store: Store, person: PersonRef, actor: { platform: string; userId: string | null; command: string }): ForgetCounts {
  return store.transaction((): ForgetCounts => {
    const ids = generationIdsOf(store, person);
    // Feedback first: its rows reference the generations about to go.
    const f = deletePersonFeedback(store, person, ids);
    const g = deleteGenerations(store, ids);
    const counts: ForgetCounts = {
      generations: g.deleted,
      feedbackGiven: f.given,
      feedbackOnTheirArticles: f.onTheirArticles,
      messageLinks: f.messages,
      regenerationsUnlinked: g.unlinked,
    };
    audit(store, {
      platform: actor.platform,
      userId: actor.userId,
      command: actor.command,
      args: `${person.platform} ${person.userId}`,
      allowed: true,
      outcome: `deleted ${formatCounts(counts)}`,
    });
    return counts;
  }).immediate();
}

export function formatCounts(c: ForgetCounts): string {
  return [
    `${c.generations} generation${c.generations === 1 ? '' : 's'}`,
    `${c.feedbackGiven} feedback given`,
    `${c.feedbackOnTheirArticles} feedback on their articles`,
    `${c.messageLinks} message link${c.messageLinks === 1 ? '' : 's'}`,
    `${c.regenerationsUnlinked} regeneration${c.regenerationsUnlinked === 1 ? '' : 's'} by others unlinked (kept)`,
  ].join(', ');
}
