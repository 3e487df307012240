/** The sign-in rate limit's windows and its bound on memory (src/controller/sign-in-limit.ts). */
import { describe, expect, it } from 'vitest';
import { SignInLimit } from '../../../src/controller/sign-in-limit.ts';

describe('SignInLimit', () => {
  it('closes a name at its limit until its window, opened by the first failure, ends', () => {
    const clock = { now: 1_000_000 };
    const limit = new SignInLimit({ now: () => clock.now, maxPerName: 2, maxPerAddress: 100, windowMs: 10_000 });
    limit.failed('alice', 'a');
    clock.now += 4_000;
    expect(limit.retryAfterS('alice', 'b')).toBe(0);
    limit.failed('alice', 'b');
    expect(limit.retryAfterS('alice', 'c')).toBe(6);
    expect(limit.retryAfterS('bob', 'c')).toBe(0);
    clock.now += 6_000;
    expect(limit.retryAfterS('alice', 'c')).toBe(0);
    // A new window: one failure does not close it.
    limit.failed('alice', 'c');
    expect(limit.retryAfterS('alice', 'c')).toBe(0);
  });

  it('closes an address for every name; a success clears only its name', () => {
    const clock = { now: 0 };
    const limit = new SignInLimit({ now: () => clock.now, maxPerName: 3, maxPerAddress: 3, windowMs: 60_000 });
    limit.failed('a', '10.0.0.1');
    limit.failed('b', '10.0.0.1');
    limit.failed('c', '10.0.0.1');
    expect(limit.retryAfterS('zed', '10.0.0.1')).toBe(60);
    expect(limit.retryAfterS('zed', '10.0.0.2')).toBe(0);
    limit.succeeded('a');
    expect(limit.retryAfterS('a', '10.0.0.1')).toBe(60);
  });

  it('tracks at most maxTracked names, forgetting the oldest windows first', () => {
    const clock = { now: 0 };
    const limit = new SignInLimit({ now: () => clock.now, maxPerName: 1, maxPerAddress: 1000, windowMs: 60_000, maxTracked: 3 });
    for (const name of ['n1', 'n2', 'n3', 'n4']) {
      clock.now += 1;
      limit.failed(name, `ip-${name}`);
    }
    expect(limit.retryAfterS('n1', 'x')).toBe(0);
    expect(limit.retryAfterS('n2', 'x')).toBeGreaterThan(0);
    expect(limit.retryAfterS('n4', 'x')).toBeGreaterThan(0);
  });
});
