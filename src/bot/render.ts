/**
 * Pure rendering for the bots: platform limits as named constants, splitting long text without
 * breaking words or markdown, Slack mrkdwn / Discord markdown, edit throttling, the attribution
 * line, mention neutralising and the content blocklist. No I/O here.
 */

/** Slack renders `text` up to 40k chars but truncates in places and recommends < 4000. */
export const SLACK_MAX_MESSAGE_LENGTH = 3900;
/** One message is edited at most this often while its article streams in. */
export const SLACK_EDIT_INTERVAL_MS = 1500;
/** chat.update is Tier 3 (~50 calls a minute per workspace): all streams together stay under it. */
export const SLACK_UPDATES_PER_MINUTE = 48;
export const DISCORD_MAX_MESSAGE_LENGTH = 2000;
/** Discord allows about 5 message edits per 5 s per channel; 1.2 s leaves room for typing. */
export const DISCORD_EDIT_INTERVAL_MS = 1200;
/** Discord's typing indicator lasts ~10 s; refresh before it lapses. */
export const DISCORD_TYPING_REFRESH_MS = 8000;
/** Topics are echoed back in notices; long ones are shortened there (not in the prompt). */
export const TOPIC_ECHO_MAX_CHARS = 100;
/** Shown after the live text while an article is still being written. */
export const STREAMING_CURSOR = ' …';

const ZWJ = '\u200D';

/** Where text is shown: a chat platform's markup, or plain text (the dashboard, the CLI). */
export type RenderPlatform = 'slack' | 'discord' | 'plain';

// ---------------------------------------------------------------- attribution and markers

export function attributionLine(columnist: string): string {
  return `AI-generated in the style of ${columnist} — not written by them`;
}

export const CUT_MARKER = '[cut short: the generation hit its time limit]';

/** The article as posted: body, a cut marker when partial, and the attribution line (markdown). */
/** Shown in the attribution line when MORRIS_COLUMNIST is not set. */
export const DEFAULT_COLUMNIST = 'a veteran British telecoms columnist';

export interface ArticleNotes {
  columnist: string;
  cut: boolean;
  cutReason?: string;
  platform?: RenderPlatform;
}

/**
 * What follows every article that leaves Morris, wherever it goes (bots, the dashboard,
 * `morris generate`, its --batch lines): a cut marker when it stopped early, and the attribution
 * line. Chat platforms get the notes in italics; plain text gets them as they are.
 */
export function articleTrailer(opts: ArticleNotes): string {
  const marker =
    opts.cut && opts.cutReason && opts.cutReason !== 'timeout' ? `[cut short: ${opts.cutReason}]` : CUT_MARKER;
  const note = (s: string) => (opts.platform === 'plain' ? s : `_${s}_`);
  return [...(opts.cut ? [note(marker)] : []), note(attributionLine(opts.columnist))].join('\n\n');
}

/** The article as it leaves Morris: the text, then its trailer (see articleTrailer). */
export function composeArticle(body: string, opts: ArticleNotes): string {
  return `${body.trim() || '(no text)'}\n\n${articleTrailer(opts)}`;
}

// ---------------------------------------------------------------- mentions and escaping

/**
 * Makes mass and direct mentions inert on both platforms by putting a zero-width joiner after the
 * `@` / `<@` / `<!` so the text still reads the same. (Discord messages also go out with
 * allowed_mentions {parse: []}; this is the second lock.)
 */
export function neutraliseMentions(text: string): string {
  return text
    .replace(/@(everyone|here|channel)\b/gi, `@${ZWJ}$1`)
    .replace(/<@([!&]?)/g, `<@${ZWJ}$1`)
    .replace(/<!/g, `<${ZWJ}!`)
    .replace(/<#/g, `<${ZWJ}#`);
}

/** Slack requires &, < and > escaped in text; escaping also disarms <!everyone> and <@U…>. */
export function escapeSlack(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Markdown-escapes user text (a topic) so it is shown literally in Discord. */
export function escapeDiscordMarkdown(text: string): string {
  return text.replace(/([\\*_~`|>#[\]()-])/g, '\\$1');
}

/** A topic quoted back to the person: one line, shortened, no formatting, no pings. */
export function echoTopic(topic: string, platform: RenderPlatform): string {
  let t = topic.replace(/\s+/g, ' ').trim();
  if (t.length > TOPIC_ECHO_MAX_CHARS) t = `${t.slice(0, TOPIC_ECHO_MAX_CHARS - 1)}…`;
  t = neutraliseMentions(t);
  if (platform === 'plain') return t;
  return platform === 'slack' ? escapeSlack(t).replace(/([*_~`])/g, `$1${ZWJ}`) : escapeDiscordMarkdown(t);
}

// ---------------------------------------------------------------- platform formatting

/** Runs `fn` on the text outside code fences and inline code, leaving code untouched. */
function outsideCode(text: string, fn: (s: string) => string, inCode: (s: string) => string = (s) => s): string {
  return text
    .split(/(```[\s\S]*?(?:```|$)|`[^`\n]*`)/g)
    .map((piece, i) => (i % 2 === 1 ? inCode(piece) : fn(piece)))
    .join('');
}

/** Common markdown (as models write it) → Slack mrkdwn, escaped and mention-safe. */
export function toSlackMrkdwn(markdown: string): string {
  return outsideCode(
    neutraliseMentions(markdown),
    (s) => {
      const links: string[] = [];
      // Pull links out before escaping so their <url|text> brackets survive.
      let out = s.replace(/\[([^\]\n]+)\]\((https?:\/\/[^\s)]+)\)/g, (_m, label: string, href: string) => {
        links.push(`<${href.replace(/[|>]/g, encodeURIComponent)}|${escapeSlack(label)}>`);
        return `\u0000${links.length - 1}\u0000`;
      });
      out = escapeSlack(out)
        .replace(/^#{1,6}\s+(.+?)\s*#*$/gm, '*$1*')
        .replace(/\*\*(.+?)\*\*/g, '*$1*')
        .replace(/~~(.+?)~~/g, '~$1~');
      return out.replace(/\u0000(\d+)\u0000/g, (_m, i: string) => links[Number(i)] ?? '');
    },
    escapeSlack,
  );
}

/** Model markdown → Discord markdown: Discord renders it natively; only pings are disarmed. */
export function toDiscordMarkdown(markdown: string): string {
  return neutraliseMentions(markdown);
}

// ---------------------------------------------------------------- splitting

const FENCE_LINE = /^ {0,3}(`{3,}|~{3,})(.*)$/;

/** The fence still open after `text` (starting with `open`), or null. */
function fenceAfter(open: string | null, text: string): string | null {
  let fence = open;
  for (const line of text.split('\n')) {
    const m = FENCE_LINE.exec(line);
    if (!m) continue;
    fence = fence === null ? line.trim() : null;
  }
  return fence;
}

/** Inline markers (outside code fences) are balanced, so a split here breaks no bold/code span. */
function inlineBalanced(chunk: string): boolean {
  const prose = chunk.replace(/```[\s\S]*?(?:```|$)/g, '');
  const count = (re: RegExp) => (prose.match(re) ?? []).length;
  return count(/\*\*/g) % 2 === 0 && count(/`/g) % 2 === 0 && count(/~~/g) % 2 === 0;
}

/** Index at which to cut `s` so that the piece before it fits in `budget` characters. */
function chooseBreak(s: string, budget: number): number {
  const floor = Math.floor(budget / 2);
  const tiers = [/\n\n/g, /\n/g, /[ \t]/g];
  const candidates: number[][] = tiers.map((re) => {
    const found: number[] = [];
    for (const m of s.slice(0, budget + 2).matchAll(re)) if (m.index > 0 && m.index <= budget) found.push(m.index);
    return found.reverse();
  });
  for (const tier of candidates) {
    const ok = tier.find((i) => i >= floor && inlineBalanced(s.slice(0, i)));
    if (ok !== undefined) return ok;
  }
  for (const tier of candidates) if (tier.length && tier[0]! >= floor) return tier[0]!;
  const anyBreak = candidates.flat().sort((a, b) => b - a)[0];
  if (anyBreak !== undefined && anyBreak > 0) return anyBreak;
  // One word longer than the budget: cut it, but never through a surrogate pair.
  const code = s.charCodeAt(budget - 1);
  return code >= 0xd800 && code <= 0xdbff ? budget - 1 : budget;
}

/**
 * Splits `text` into parts of at most `maxLength` characters, preferring paragraph, then line,
 * then word boundaries, keeping bold and inline-code spans whole where possible, and closing a code
 * fence at the end of a part and reopening it (same language) at the start of the next.
 */
export function splitMessage(text: string, maxLength: number): string[] {
  if (maxLength < 20) throw new RangeError('maxLength must be at least 20');
  const parts: string[] = [];
  let rest = text;
  let open: string | null = null;
  while (rest.length > 0) {
    const prefix = open ? `${open}\n` : '';
    if (prefix.length + rest.length <= maxLength) {
      parts.push(prefix + rest);
      break;
    }
    const closeReserve = 4 + 12; // "\n```" plus a reopened fence's language tag may still follow
    const cut = chooseBreak(rest, maxLength - prefix.length - closeReserve);
    const chunk = rest.slice(0, cut).replace(/\s+$/, '');
    const after = fenceAfter(open, chunk);
    const fenceChars = after ? after.match(/^(`{3,}|~{3,})/)![1]! : '';
    parts.push(prefix + chunk + (after ? `\n${fenceChars}` : ''));
    open = after;
    rest = rest.slice(cut).replace(after ? /^\n+/ : /^\s+/, '');
  }
  return parts.length ? parts : [''];
}

// ---------------------------------------------------------------- throttling

/** How long to wait before the next edit is allowed: 0 = now (never edited yet, or at least `intervalMs` since the last). */
export function editDelay(lastEditAt: number | null, now: number, intervalMs: number): number {
  return lastEditAt === null ? 0 : Math.max(0, intervalMs - (now - lastEditAt));
}

// ---------------------------------------------------------------- content checks

/** Folds case, compatibility forms and invisible characters so "B\u200Dad" matches "bad". */
function normaliseForMatch(text: string): string {
  return text
    .normalize('NFKC')
    .replace(/[\u200B-\u200D\u2060\uFEFF\u00AD]/g, '')
    .toLowerCase();
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** The first blocklist term (word or phrase, whole words only) found in `text`, or undefined. */
export function findBlockedTerm(text: string, blocklist: readonly string[]): string | undefined {
  if (blocklist.length === 0) return undefined;
  const hay = normaliseForMatch(text);
  for (const term of blocklist) {
    const t = normaliseForMatch(term).trim();
    if (!t) continue;
    const words = t.split(/\s+/).map(escapeRegExp).join('\\s+');
    if (new RegExp(`(?<![\\p{L}\\p{N}])${words}(?![\\p{L}\\p{N}])`, 'u').test(hay)) return term;
  }
  return undefined;
}
