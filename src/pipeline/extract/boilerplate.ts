/**
 * Paragraph-level boilerplate that survives block selection because it sits inside the article
 * container: ad labels, gallery counters, "Related:" teasers, share prompts, and the contact and
 * subscription lines that close many articles.
 */

/** A whole paragraph that is only a label. */
const LABEL_ONLY =
  /^(?:advertisement|advertising|advert|ad|ads|sponsored( content)?|promoted|comments?|\d+ comments?|share( this( article| story| post)?)?|share on \w+|tweet|email|print|read more|continue reading|show more|load more|related( articles| stories| content| links| posts| coverage)?|more on this( story| topic)?|you (may|might) also like|recommended( for you)?|trending( now)?|don'?t miss|most (read|popular|viewed)|top stories|watch( now)?|listen( now)?|loading|skip (ad|advertisement)|this slideshow requires javascript|tell us what you think|leave a (comment|reply)|post a comment|click (here )?to (expand|enlarge)|enlarge( this image| image)?|image \d+ (of|\/) \d+|\d+ min(ute)?s? read|reading time:? .{0,20})[\s.:!…>»|-]*$/i;

/** Short teaser lines: "Related: …", "SEE MORE: …", "READ MORE: …". */
const TEASER_PREFIX = /^[[(]?(?:related(?: \w+){0,2}|also|see more|see also|read more|read also|also read|also on [\w.]+|more|recommended|watch|listen|click here|must read|top story|latest|trending|don'?t miss|tags|tagged|tagged with|filed under|categories|category|topics)\s*(?:[:|>»]|-\s)/i;

/**
 * Closing lines that address the reader rather than tell the story. Phrased narrowly (second
 * person, "our", imperatives), because a column's real last line must never match.
 */
const CLOSING_LINE = new RegExp([
  String.raw`reach (?:the )?(?:reporters?|authors?|writers?) (?:on|at)`,
  String.raw`contributed (?:to )?(?:this )?report`,
  String.raw`^\(?(?:additional )?reporting by`,
  String.raw`^write to \S+.{0,40}@`,
  String.raw`email (?:\w+ ){0,3}at \S+@`,
  String.raw`contact (?:\w+ ){0,3}at \S+@`,
  String.raw`follow @\w+ on`,
  String.raw`follow (?:us|him|her|me) (?:on|at|@)`,
  String.raw`follow (?:[\w'’]+ )?(?:full |live )?coverage (?:of|at|on)`,
  String.raw`if you enjoyed this`,
  String.raw`share (?:it|this)(?: story| article)? with`,
  String.raw`sign up (?:for|to) (?:our|my)\b|sign up (?:now|today|here)|sign up for .{0,60}\bnewsletter`,
  String.raw`subscribe (?:to (?:our|my)\b|now|today|here)|subscribe to [\w.'’ ]{0,40}(?:newsletter|channel|podcast|youtube)`,
  String.raw`our (?:daily |weekly |free )?newsletters?`,
  String.raw`news ?tip|have a tip`,
  String.raw`join (?:our|the) \w+ (?:forum|community|conversation)`,
  String.raw`click here (?:to|for)`,
  String.raw`download our (?:\w+ )?app`,
].join('|'), 'i');

const MONTH = '(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\\.?';
/** A date written out: "Nov. 20, 2019", "20 November 2019", "2019-11-20", "11/20/2019". */
const HAS_DATE = new RegExp(`\\b${MONTH}\\s+\\d{1,2}(?:st|nd|rd|th)?,?\\s+\\d{4}|\\b\\d{1,2}(?:st|nd|rd|th)?\\s+${MONTH}\\s+\\d{4}|\\b\\d{4}-\\d{2}-\\d{2}\\b|\\b\\d{1,2}[/.]\\d{1,2}[/.]\\d{2,4}\\b`, 'i');
/** Words a timestamp line is made of besides the date itself. */
const DATELINE_WORDS = new RegExp(`^(?:${MONTH}|(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*|published|updated|posted|modified|last|first|on|at|by|am|pm|a\\.m|p\\.m|[a-z]{1,2}[sd]t|utc|gmt|amt|cet|cest|bst|ist|jst|aest|aedt|\\d+(?:st|nd|rd|th)?)$`, 'i');

/** "Updated 10:01 pm PST, Tuesday, November 19, 2019" and the like: a timestamp, nothing else. */
export function isDateline(p: string): boolean {
  if (p.length > 100 || !HAS_DATE.test(p)) return false;
  const words = p.match(/[\p{L}\p{N}.]+/gu) ?? [];
  const other = words.filter((w) => !DATELINE_WORDS.test(w.replace(/\.$/, '')));
  return other.length <= 1;
}

/** "By JANE DOE and JOHN ROE": a byline at the top of the text. */
const BYLINE = /^[Bb][Yy]\s+\p{Lu}[\p{L}.'’-]*(?:[\s,]+(?:and\s+|&\s+)?\p{Lu}[\p{L}.'’-]*){0,12}$/u;

/** How far from the end a closing line may sit and still be treated as one. */
const CLOSING_WINDOW = 4;

/** Paragraphs with the boilerplate taken out; `title` (the headline) is dropped where it repeats. */
export function dropBoilerplateParagraphs(paragraphs: string[], title: string | null = null): string[] {
  const headline = title ? tokenKey(title) : null;
  const kept = paragraphs.filter((p, i) =>
    !(p.length <= 60 && LABEL_ONLY.test(p)) &&
    !((p.length < 200 || p.split('|').length > 2) && TEASER_PREFIX.test(p)) &&
    !isDateline(p) &&
    !(i < 8 && p.length < 150 && BYLINE.test(p)) &&
    !(headline && i < 5 && tokenKey(p) === headline));
  let end = kept.length;
  while (end > 0 && kept.length - end < CLOSING_WINDOW && kept[end - 1]!.length < 400 && CLOSING_LINE.test(kept[end - 1]!)) end--;
  return kept.slice(0, end);
}

const tokenKey = (s: string): string => (s.match(/[\p{L}\p{N}]+/gu) ?? []).join(' ').toLowerCase();
