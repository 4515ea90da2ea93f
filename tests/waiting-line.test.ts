/** The shared FIFO waiting line: lanes, caps, positions and BUSY, without any queue owner. */
import { describe, expect, it } from 'vitest';
import { WaitingLine, type Waiter } from '../src/waiting-line.ts';

interface Named extends Waiter {
  name: string;
  positions: number[];
}

function waiter(name: string, background = false): Named {
  const w: Named = { name, background, positions: [], onPosition: (p) => w.positions.push(p) };
  return w;
}

const names = (line: WaitingLine<Named>) => line.waiters().map((w) => w.name);

describe('WaitingLine', () => {
  it('is first in, first out, and tells each waiter its position once per change', () => {
    const line = new WaitingLine<Named>(5);
    const [a, b, c] = [waiter('a'), waiter('b'), waiter('c')];
    line.add(a);
    line.add(b);
    line.add(c);
    expect(line.shift()).toBe(a);
    expect(line.shift()).toBe(b);
    expect(a.positions).toEqual([1]);
    expect(b.positions).toEqual([2, 1]);
    expect(c.positions).toEqual([3, 2, 1]);
    expect(line.length).toBe(1);
  });

  it('puts a foreground arrival ahead of every waiting background one', () => {
    const line = new WaitingLine<Named>(5);
    const bg1 = waiter('bg1', true);
    line.add(bg1);
    line.add(waiter('bg2', true));
    line.add(waiter('fg1'));
    line.add(waiter('fg2'));
    expect(names(line)).toEqual(['fg1', 'fg2', 'bg1', 'bg2']);
    expect(bg1.positions).toEqual([1, 2, 3]);
  });

  it('caps each lane on its own and says BUSY past the cap, with the owner hint', () => {
    const line = new WaitingLine<Named>(1, 2, 'One at a time.');
    line.add(waiter('fg'));
    line.add(waiter('bg1', true));
    line.add(waiter('bg2', true));
    expect(() => line.add(waiter('fg2'))).toThrow(expect.objectContaining({ code: 'BUSY', hint: 'One at a time.' }));
    expect(() => line.add(waiter('bg3', true))).toThrow(expect.objectContaining({ code: 'BUSY', message: expect.stringContaining('(2)') }));
    expect(names(line)).toEqual(['fg', 'bg1', 'bg2']);
  });

  it('closes the gap when a waiter leaves, and ignores one that is not waiting', () => {
    const line = new WaitingLine<Named>(5);
    const [a, b, c] = [waiter('a'), waiter('b'), waiter('c')];
    [a, b, c].forEach((w) => line.add(w));
    expect(line.remove(b)).toBe(true);
    expect(line.remove(b)).toBe(false);
    expect(c.positions).toEqual([3, 2]);
    expect(a.positions).toEqual([1]);
    expect(names(line)).toEqual(['a', 'c']);
  });

  it('shift on an empty line is undefined', () => {
    expect(new WaitingLine<Named>(1).shift()).toBeUndefined();
  });
});
