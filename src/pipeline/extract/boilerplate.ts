/**
 * Paragraph-level boilerplate that survives block selection because it sits inside the article
 * container: ad labels, gallery counters, "Related:" teasers, share prompts, and the contact and
 * subscription lines that close many articles.
 */

/** A whole paragraph that is only a label. */
const LABEL_ONLY =
  /^(?:advertisement|advertising|advert|ad|ads|sponsored( content)?|promoted|comments?|\d+ comments?|share( this( article| story| post)?)?|share on \w+|tweet|email|print|read more|continue reading|show more|load more|related( articles| stories| content| links| posts| coverage)?|more on this( story| topic)?|you (may|might) also like|recommended( for you)?|trending( now)?|don'?t miss|most (read|popular|viewed)|top stories|watch( now)?|listen( now)?|loading|skip (ad|advertisement)|this slideshow requires javascript|tell us what you think|leave a (comment|reply)|post a comment|click (here )?to (expand|enlarge)|enlarge( this image)?|image \d+ (of|\/) \d+)[\s.:!…>»|-]*$/i;

/** Short teaser lines: "Related: …", "SEE MORE: …", "READ MORE: …". */
const TEASER_PREFIX = /^(?:related|see more|see also|read more|read also|also read|more|recommended|watch|listen|click here|must read|top story|latest|trending|don'?t miss)\s*[:|>»-]/i;

/** Closing lines that address the reader rather than tell the story. */
const CLOSING_LINE =
  /follow (?:us|him|her|them|me)\b|(?:sign|signs) up (?:for|to)|subscribe (?:to|for|now|today)|our newsletter|news ?tip|have a tip|email (?:\w+ ){0,3}at \S+@|contact (?:\w+ ){0,3}at \S+@|join (?:our|the) \w+ (?:forum|community|conversation)|click here (?:to|for)|get the .{0,30}\bapp\b|download (?:our|the) .{0,30}\bapp\b/i;

/** How far from the end a closing line may sit and still be treated as one. */
const CLOSING_WINDOW = 4;

export function dropBoilerplateParagraphs(paragraphs: string[]): string[] {
  const kept = paragraphs.filter((p) => !(p.length <= 60 && LABEL_ONLY.test(p)) && !(p.length < 200 && TEASER_PREFIX.test(p)));
  let end = kept.length;
  while (end > 0 && kept.length - end < CLOSING_WINDOW && kept[end - 1]!.length < 400 && CLOSING_LINE.test(kept[end - 1]!)) end--;
  return kept.slice(0, end);
}
