/**
 * The vocabulary of boilerplate: tags, roles and class/id words that mark page furniture rather
 * than article text. Gathered from Readability.js, trafilatura and boilerpipe's rules; kept here
 * as data so the heuristics in body.ts read as logic only.
 */

/** Never text: removed before anything is scored. */
export const DROP_TAGS = new Set([
  'script', 'style', 'noscript', 'template', 'svg', 'math', 'canvas', 'iframe', 'object', 'embed',
  'video', 'audio', 'source', 'track', 'map', 'button', 'input', 'select',
  'option', 'textarea', 'head', 'link', 'meta', 'dialog', 'frameset', 'frame',
]);

/** Page furniture by tag; their text is never article body. */
export const FURNITURE_TAGS = new Set(['nav', 'aside', 'footer', 'menu', 'figure', 'figcaption']);

export const FURNITURE_ROLES = new Set([
  'navigation', 'complementary', 'contentinfo', 'banner', 'menu', 'menubar', 'alert', 'alertdialog',
  'dialog', 'search', 'toolbar', 'tablist',
]);

/** Class/id words of blocks that are almost never article text. */
export const UNLIKELY =
  /(?:^|[\s_-])(?:-?ad-|ads?|adv|advert\w*|ai2html|banner|breadcrumbs?|combx|comment\w*|community|cover-wrap|disqus|extra|footer|gdpr|legends|menu|related|remark|replies|rss|shoutbox|sidebar|skyscraper|social|sponsor\w*|supplemental|ad-break|agegate|pagination|pager|popup|yom-remote|share|sharing|sharebar|subscribe|subscription|newsletter|signup|sign-up|promo\w*|outbrain|taboola|recirc\w*|trending|most-?popular|popular|recommend\w*|cookie\w*|consent|modal|captions?|credits?|gallery|slideshow|carousel|slider|lightbox|overlay|masthead|navbar|nav|tools|toolbar|widget\w*|byline|author-bio|author-info|tags?|tag-list|keywords|navigation|print|email|follow|visually-hidden|sr-only|screen-reader-text|jump|skip)(?:$|[\s_-])/i;

/** UNLIKELY words that stay unlikely even next to a "content"-style word ("related-articles"). */
export const STRONGLY_UNLIKELY =
  /(?:^|[\s_-])(?:comments?|related|share|sharing|newsletter|author|authors|author-?box|about-?(?:the-)?author|bio|subscribe|promo|outbrain|taboola|recirc\w*|trending|most-?popular|recommend\w*|cookie\w*|consent|sidebar|footer|breadcrumbs?|advert\w*|sponsored)(?:$|[\s_-])/i;

/** Fragments that mark boilerplate even inside longer class names ("relatedpoststitle", "commentlist"). */
export const UNLIKELY_FRAGMENT = /related|comment|disqus|outbrain|taboola|recirc|breadcrumb|newsletter|trending|recommend/i;

/** Headings that introduce lists of other stories. */
export const RELATED_HEADING =
  /^(?:related|more (?:[\p{L}']+ ){0,2}(?:stories|news|articles|reads|videos)|more (?:from|on|like this|to read|in)|you (?:may|might) (?:also )?(?:like|enjoy|be interested)|recommended|read (?:more|also|next)|also read|most (?:read|popular|viewed|shared)|trending|popular|see also|further reading|latest (?:news|stories)|top stories|what to read next|don'?t miss|in case you missed it)(?![\p{L}\p{N}])/iu;

/** Class/id words that rescue a block matched by UNLIKELY (e.g. "article-comments-count" no, "main-content" yes). */
export const MAYBE_CANDIDATE = /and|article|body|column|content|main|shadow|story|entry|post-?text|text|embed/i;

/** Readability's class weights: words that raise or lower a container's score. */
export const POSITIVE =
  /article|body|content|entry|hentry|h-entry|main|page|pagination|post|text|blog|story|prose|rich-?text/i;
export const NEGATIVE =
  /-ad-|hidden|^hid$| hid$| hid |^hid |banner|combx|comment|com-|contact|footer|gdpr|masthead|media|meta|outbrain|promo|related|scroll|share|shoutbox|sidebar|skyscraper|sponsor|shopping|tags|widget|byline|author|dateline|caption|credit|newsletter|subscribe|recirc|trending|popular|recommend|social/i;

/** Elements whose children are laid out as separate blocks (for scoring and for text output). */
export const BLOCK_TAGS = new Set([
  'address', 'article', 'aside', 'blockquote', 'body', 'center', 'dd', 'details', 'dialog', 'dir',
  'div', 'dl', 'dt', 'fieldset', 'figcaption', 'figure', 'footer', 'form', 'h1', 'h2', 'h3', 'h4',
  'h5', 'h6', 'header', 'hgroup', 'hr', 'html', 'li', 'main', 'menu', 'nav', 'ol', 'p', 'pre',
  'section', 'summary', 'table', 'tbody', 'thead', 'tfoot', 'tr', 'td', 'th', 'caption', 'ul',
  'article', 'legend', 'option', 'root',
]);

/** Commas in the scripts the benchmark pages use (Latin, CJK, Arabic). */
export const COMMAS = /[,\u060c\ufe50\ufe10\ufe11\u2e41\u2e34\u2e32\uff0c\u3001]/g;
