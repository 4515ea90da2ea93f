import { describe, expect, it } from 'vitest';
import { articlePrompt, columnInstruction } from '../src/prompts.ts';
import { INSTRUCTION_TEMPLATES } from '../src/pipeline/enhance.ts';

describe('column instruction', () => {
  it('ends in one full stop whatever the topic ends with', () => {
    expect(columnInstruction('  the death of 3G ')).toBe('Write a column about the death of 3G.');
    expect(columnInstruction('is 6G a joke?!')).toBe('Write a column about is 6G a joke.');
  });

  it('generation asks exactly as the first training template teaches', () => {
    const taught = INSTRUCTION_TEMPLATES[0]!({ title: 'x', topic: 'network slicing', open: '', words: 0 });
    expect(articlePrompt('network slicing')).toBe(taught);
  });
});
