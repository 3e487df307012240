/**
 * Cutting log bytes on UTF-8 character boundaries (`utf8-cut.ts`): a piece never ends inside a
 * character and a start inside one skips to the next, for 1- to 4-byte characters.
 */
import { describe, expect, it } from 'vitest';
import { leadingContinuations, pageOf, wholeCharsLength } from '../../src/controller/utf8-cut.ts';

const bytes = (s: string) => Buffer.from(s, 'utf8');

describe('wholeCharsLength', () => {
  it('keeps whole text, and drops an unfinished character of 2, 3 or 4 bytes at the end', () => {
    for (const text of ['', 'abc', 'é', 'a€', 'x🚀', 'tab\t\r\n']) expect(wholeCharsLength(bytes(text))).toBe(bytes(text).length);
    for (const ch of ['é', '€', '🚀']) {
      const whole = bytes(`ab${ch}`);
      for (let cut = 3; cut < whole.length; cut++) expect(wholeCharsLength(whole.subarray(0, cut)), `${ch} cut at ${cut}`).toBe(2);
    }
  });

  it('leaves bytes that are not UTF-8 as they are', () => {
    expect(wholeCharsLength(Buffer.from([0x61, 0x80, 0x80, 0x80, 0x80]))).toBe(5);
    expect(wholeCharsLength(Buffer.from([0x61, 0xff]))).toBe(2);
  });
});

describe('leadingContinuations', () => {
  it('counts the bytes to skip from a start inside a character', () => {
    expect(leadingContinuations(bytes('abc'))).toBe(0);
    expect(leadingContinuations(bytes('🚀x').subarray(1))).toBe(3);
    expect(leadingContinuations(bytes('€x').subarray(2))).toBe(1);
    expect(leadingContinuations(Buffer.alloc(0))).toBe(0);
  });
});

describe('pageOf', () => {
  it('steps a page back to a whole character, and gives a first character longer than the page whole', () => {
    const page = (text: string, limit: number) => pageOf(bytes(text), limit).toString('utf8');
    expect(page('ab€cd', 4)).toBe('ab');
    expect(page('ab€cd', 5)).toBe('ab€');
    expect(page('🚀x', 1)).toBe('🚀');
    expect(page('🚀x', 4)).toBe('🚀');
    expect(page('abc', 10)).toBe('abc');
    expect(page('', 3)).toBe('');
  });
});
