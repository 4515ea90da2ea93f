import { describe, expect, it } from 'vitest';
import {
  attributionLine,
  composeArticle,
  DISCORD_MAX_MESSAGE_LENGTH,
  echoTopic,
  editDelay,
  findBlockedTerm,
  neutraliseMentions,
  splitMessage,
  toDiscordMarkdown,
  toSlackMrkdwn,
} from '../../src/bot/render.ts';

const ZWJ = '\u200D';

function words(n: number, seed = 1): string {
  const vocab = ['telecoms', 'strategy', 'synergy', 'capex', 'keynote', 'roadmap', 'hype', 'monetisation', 'a', 'of'];
  let x = seed;
  return Array.from({ length: n }, () => {
    x = (x * 1103515245 + 12345) % 2147483648;
    return vocab[x % vocab.length];
  }).join(' ');
}

describe('splitMessage', () => {
  it('keeps short text as one part', () => {
    expect(splitMessage('hello world', 2000)).toEqual(['hello world']);
  });

  it('never exceeds the limit, never breaks a word, and loses no words', () => {
    const text = Array.from({ length: 12 }, (_, i) => words(60 + i * 7, i + 1)).join('\n\n');
    for (const max of [100, 333, DISCORD_MAX_MESSAGE_LENGTH]) {
      const parts = splitMessage(text, max);
      for (const p of parts) expect(p.length).toBeLessThanOrEqual(max);
      expect(parts.join(' ').split(/\s+/)).toEqual(text.split(/\s+/));
    }
  });

  it('prefers paragraph boundaries', () => {
    const a = words(50, 3);
    const b = words(50, 4);
    const parts = splitMessage(`${a}\n\n${b}`, a.length + 40);
    expect(parts).toEqual([a, b]);
  });

  it('closes a code fence at the end of a part and reopens it with its language', () => {
    const code = Array.from({ length: 80 }, (_, i) => `const x${i} = ${i};`).join('\n');
    const text = `Intro paragraph.\n\n\`\`\`ts\n${code}\n\`\`\`\n\nOutro.`;
    const parts = splitMessage(text, 300);
    expect(parts.length).toBeGreaterThan(3);
    for (const p of parts) {
      expect(p.length).toBeLessThanOrEqual(300);
      // Every part has balanced fences, so each renders on its own.
      expect((p.match(/^```/gm) ?? []).length % 2).toBe(0);
    }
    expect(parts[1]!.startsWith('```ts\n')).toBe(true);
    const rejoined = parts.join('\n').replace(/\n```\n```ts\n/g, '\n');
    for (let i = 0; i < 80; i++) expect(rejoined).toContain(`const x${i} = ${i};`);
  });

  it('keeps **bold** spans whole when a nearby break allows', () => {
    const text = `${words(30, 7)} **${words(8, 8)}** ${words(30, 9)}`;
    for (const max of [120, 150, 190]) {
      for (const p of splitMessage(text, max)) expect((p.match(/\*\*/g) ?? []).length % 2).toBe(0);
    }
  });

  it('cuts a single over-long word but never through a surrogate pair', () => {
    const emoji = '😀'.repeat(50); // 100 UTF-16 units
    const parts = splitMessage(emoji, 31);
    expect(parts.join('')).toBe(emoji);
    for (const p of parts) {
      expect(p.length).toBeLessThanOrEqual(31);
      expect(/^[\uDC00-\uDFFF]/.test(p)).toBe(false);
    }
  });
});

describe('mentions', () => {
  it('neutralises @everyone, @here, user and role mentions with a zero-width joiner', () => {
    const out = neutraliseMentions('hi @everyone and @here, <@123>, <@!456>, <@&789>, <!channel>');
    expect(out).not.toMatch(/@everyone|@here|<@\d|<@!|<@&|<!channel/);
    expect(out.replaceAll(ZWJ, '')).toBe('hi @everyone and @here, <@123>, <@!456>, <@&789>, <!channel>');
  });

  it('Slack formatting escapes control characters so <!everyone> cannot ping', () => {
    const out = toSlackMrkdwn('Dear <!everyone> & <@U123>: **Big news**');
    expect(out).not.toContain('<!');
    expect(out).not.toContain('<@');
    expect(out).toContain('&amp;');
    expect(out).toContain('*Big news*');
  });

  it('Discord formatting keeps markdown but disarms mentions', () => {
    expect(toDiscordMarkdown('**bold** @everyone')).toBe(`**bold** @${ZWJ}everyone`);
  });
});

describe('toSlackMrkdwn', () => {
  it('converts headings, bold, strike and links; leaves code alone', () => {
    const out = toSlackMrkdwn('# Title\n**b** ~~s~~ [site](https://x.test/a?b=1&c=2)\n`**raw**`');
    expect(out).toBe('*Title*\n*b* ~s~ <https://x.test/a?b=1&c=2|site>\n`**raw**`');
  });
});

describe('echoTopic', () => {
  it('shows injected markdown literally and shortens long topics', () => {
    expect(echoTopic('*bold* `x` <@123>', 'discord')).toBe('\\*bold\\* \\`x\\` <@\u200D123\\>');
    const slack = echoTopic('*bold* <!here>', 'slack');
    expect(slack).not.toContain('<!here>');
    expect(slack).not.toMatch(/\*bold\*/);
    expect(echoTopic('x'.repeat(500), 'discord').length).toBeLessThanOrEqual(100);
  });
});

describe('editDelay', () => {
  it('allows the first edit and then one per interval', () => {
    // 0 = the edit may be sent now (what shouldEdit, used only here, answered as a boolean).
    expect(editDelay(null, 1000, 1500)).toBe(0);
    expect(editDelay(1000, 2499, 1500)).toBe(1);
    expect(editDelay(1000, 2500, 1500)).toBe(0);
    expect(editDelay(1000, 1200, 1500)).toBe(1300);
    expect(editDelay(null, 1200, 1500)).toBe(0);
  });
});

describe('attribution', () => {
  it('is on every composed article, with a cut marker when partial', () => {
    const full = composeArticle('Body.', { columnist: 'X Y', cut: false });
    expect(full).toContain(attributionLine('X Y'));
    expect(attributionLine('X Y')).toBe('AI-generated in the style of X Y — not written by them');
    const cut = composeArticle('Half', { columnist: 'X Y', cut: true, cutReason: 'timeout' });
    expect(cut).toMatch(/cut short/);
    expect(cut.endsWith(`_${attributionLine('X Y')}_`)).toBe(true);
  });
});

describe('findBlockedTerm', () => {
  const list = ['forbidden', 'very bad phrase'];
  it('matches whole words and phrases, case- and width-insensitively', () => {
    expect(findBlockedTerm('This is FORBIDDEN.', list)).toBe('forbidden');
    expect(findBlockedTerm('a very   bad phrase here', list)).toBe('very bad phrase');
    expect(findBlockedTerm('ｆｏｒｂｉｄｄｅｎ', list)).toBe('forbidden');
    expect(findBlockedTerm(`for${ZWJ}bidden`, list)).toBe('forbidden');
  });
  it('does not match inside other words or with an empty list', () => {
    expect(findBlockedTerm('unforbiddenness', list)).toBeUndefined();
    expect(findBlockedTerm('forbidden', [])).toBeUndefined();
  });
});
