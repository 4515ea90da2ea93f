/**
 * Telling text from binary bodies and decoding text in the character encoding the HTML spec's
 * order of precedence gives (BOM, Content-Type header, <meta> or XML declaration).
 */

const TEXTUAL_TYPE = /^(text\/|application\/(xhtml\+xml|xml|rss\+xml|atom\+xml|json|ld\+json)|[^;]*\+xml)/i;

/** True for bodies we should not try to read as text: declared non-text types, or NUL bytes. */
export function isBinary(contentType: string | null, bytes: Uint8Array): boolean {
  if (contentType && !TEXTUAL_TYPE.test(contentType.trim())) return true;
  const head = bytes.subarray(0, 1024);
  // UTF-16 text carries NULs legitimately; its BOM says so.
  if ((head[0] === 0xff && head[1] === 0xfe) || (head[0] === 0xfe && head[1] === 0xff)) return false;
  return head.includes(0);
}

/**
 * The body's character encoding, in the HTML spec's order of precedence: byte order mark, then the
 * Content-Type header, then a <meta charset> / http-equiv declaration (or an XML declaration) in
 * the first 1024 bytes. Returns a WHATWG encoding label, or null when nothing declares one.
 */
export function detectCharset(bytes: Uint8Array, contentType: string | null): string | null {
  if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) return 'utf-8';
  if (bytes[0] === 0xff && bytes[1] === 0xfe) return 'utf-16le';
  if (bytes[0] === 0xfe && bytes[1] === 0xff) return 'utf-16be';
  const fromHeader = contentType?.match(/charset\s*=\s*["']?([\w.:-]+)/i)?.[1];
  if (fromHeader && isKnownEncoding(fromHeader)) return fromHeader.toLowerCase();
  const head = Buffer.from(bytes.subarray(0, 1024)).toString('latin1');
  const meta =
    head.match(/<meta[^>]+charset\s*=\s*["']?\s*([\w.:-]+)/i)?.[1] ??
    head.match(/^<\?xml[^>]+encoding\s*=\s*["']([\w.:-]+)["']/i)?.[1];
  if (meta && isKnownEncoding(meta)) {
    // The spec maps a declared UTF-16 in an ASCII-compatible document to UTF-8.
    return /^utf-16/i.test(meta) ? 'utf-8' : meta.toLowerCase();
  }
  return null;
}

function isKnownEncoding(label: string): boolean {
  try {
    new TextDecoder(label);
    return true;
  } catch {
    return false;
  }
}

/** WHATWG windows-1252 code points for bytes 0x80–0x9F (the rest of the range is Latin-1). */
const CP1252_HIGH = [
  0x20ac, 0x81, 0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021, 0x02c6, 0x2030, 0x0160, 0x2039, 0x0152, 0x8d, 0x017d, 0x8f,
  0x90, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014, 0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0x9d, 0x017e, 0x0178,
];

/** Decodes with the given label (windows-1252, iso-8859-x, shift_jis … through ICU); BOM removed. */
export function decode(bytes: Uint8Array, label: string): string {
  const decoder = new TextDecoder(label);
  if (decoder.encoding !== 'windows-1252') return decoder.decode(bytes);
  // Node 20's TextDecoder decodes windows-1252 (and so latin1/iso-8859-1, its WHATWG aliases) as
  // plain Latin-1, turning smart quotes, dashes and € into C1 control characters.
  let out = '';
  for (let i = 0; i < bytes.length; i += 8192) {
    const chunk = bytes.subarray(i, i + 8192);
    out += String.fromCharCode(...Array.from(chunk, (b) => (b >= 0x80 && b <= 0x9f ? CP1252_HIGH[b - 0x80] : b)));
  }
  return out;
}
