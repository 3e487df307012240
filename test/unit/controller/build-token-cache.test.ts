import { describe, expect, it } from 'vitest';
import { BuildTokenCache } from '../../../src/controller/build-token-cache.ts';
import type { AttemptRecord } from '../../../src/controller/store/store.ts';

const attempt = (n: number, endedAt: number | null = null): AttemptRecord => ({
  buildId: `build${n}`,
  attempt: 1,
  workerId: 'mac-1',
  lease: `lease${n}`,
  buildTokenHash: `hash${n}`,
  claimedAt: 0,
  endedAt,
  outcome: null,
  failureReason: null,
  exitCode: null,
  message: null,
  logOffset: 0,
});

describe('BuildTokenCache', () => {
  it('keeps running attempts by their token digest, never an ended one', () => {
    const cache = new BuildTokenCache();
    cache.remember(attempt(1));
    cache.remember(attempt(2, 1000));
    expect(cache.get('hash1')?.buildId).toBe('build1');
    expect(cache.get('hash2')).toBeUndefined();
    cache.forget('hash1');
    expect(cache.get('hash1')).toBeUndefined();
  });

  it('drops the oldest entry past its bound', () => {
    const cache = new BuildTokenCache(2);
    cache.remember(attempt(1));
    cache.remember(attempt(2));
    cache.remember(attempt(2));
    expect(cache.size).toBe(2);
    cache.remember(attempt(3));
    expect(cache.size).toBe(2);
    expect(cache.get('hash1')).toBeUndefined();
    expect(cache.get('hash2')?.buildId).toBe('build2');
    expect(cache.get('hash3')?.buildId).toBe('build3');
  });

  it('refuses a bound that is not a positive integer', () => {
    expect(() => new BuildTokenCache(0)).toThrow(/maxEntries/);
  });
});
