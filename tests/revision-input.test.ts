/** The revision prompt (prompts.ts) and the service's checks of a revision request (issue 16). */
import { describe, expect, it } from 'vitest';
import { revisionMessages } from '../src/prompts.ts';
import { validateInput } from '../src/model/serving/request.ts';
import { isMorrisError } from '../src/errors.ts';

const code = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    return isMorrisError(e) ? e.code : 'other';
  }
  return null;
};

describe('revision input', () => {
  it('the conversation is system, the original ask, the previous article, the instruction', () => {
    expect(revisionMessages('style', 'late trains', 'Old article', '  shorter ')).toEqual([
      { role: 'system', content: 'style' },
      { role: 'user', content: 'Write a column about late trains.' },
      { role: 'assistant', content: 'Old article' },
      { role: 'user', content: 'shorter' },
    ]);
  });

  it('the service keeps a valid revision and refuses an empty or too long instruction with BAD_INPUT', () => {
    expect(validateInput({ topic: ' late  trains ', revision: { previousArticle: 'A', instruction: ' shorter ' } }, 100)).toEqual({
      topic: 'late trains',
      revision: { previousArticle: 'A', instruction: 'shorter' },
    });
    expect(code(() => validateInput({ topic: 't', revision: { previousArticle: 'A', instruction: '  ' } }, 100))).toBe('BAD_INPUT');
    expect(code(() => validateInput({ topic: 't', revision: { previousArticle: 'A', instruction: 'x'.repeat(101) } }, 100))).toBe('BAD_INPUT');
    expect(code(() => validateInput({ topic: 't', revision: { previousArticle: 'x'.repeat(20_001), instruction: 'shorter' } }, 100))).toBe('BAD_INPUT');
  });
});
