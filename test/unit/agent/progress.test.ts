import { describe, expect, it } from 'vitest';
import { LineSplitter, parseProgressMarker, stepProgress } from '../../../src/agent/progress.ts';

describe('progress markers', () => {
  it.each([
    ['::progress 45', 45],
    ['  ::progress 7%', 7],
    ['::progress 100', 100],
    ['::progress 0', 0],
  ])('reads %j as %i', (line, n) => expect(parseProgressMarker(line)).toBe(n));

  it.each(['::progress 101', '::progress', 'progress 5', 'echo ::progress 5', '::progress five', '::progress 5 extra'])('ignores %j', (line) =>
    expect(parseProgressMarker(line)).toBeNull(),
  );

  it('advances step by step without markers', () => {
    expect([0, 1, 2, 3].map((i) => stepProgress(i, 4))).toEqual([0, 25, 50, 75]);
  });

  it('splits a stream into whole lines across chunks', () => {
    const s = new LineSplitter();
    expect(s.push('::prog')).toEqual([]);
    expect(s.push('ress 40\nnext')).toEqual(['::progress 40']);
    expect(s.push(' line\n')).toEqual(['next line']);
  });
});
