/** The sign-in rate limit's windows, reservations, address keys and bound on memory (src/controller/sign-in-limit.ts), and the bound on hashing at once (hash-gate.ts). */
import { describe, expect, it } from 'vitest';
import { addressKey, SignInLimit } from '../../../src/controller/sign-in-limit.ts';
import { HashGate } from '../../../src/controller/hash-gate.ts';

describe('SignInLimit', () => {
  it('closes a name at its limit until its window, opened by the first attempt, ends', () => {
    const clock = { now: 1_000_000 };
    const limit = new SignInLimit({ now: () => clock.now, maxPerName: 2, maxPerAddress: 100, windowMs: 10_000 });
    expect(limit.reserve('alice', 'a')).toBe(0);
    clock.now += 4_000;
    expect(limit.retryAfterS('alice', 'b')).toBe(0);
    expect(limit.reserve('alice', 'b')).toBe(0);
    expect(limit.retryAfterS('alice', 'c')).toBe(6);
    // A refused reservation counts nothing and says how long to wait.
    expect(limit.reserve('alice', 'c')).toBe(6);
    expect(limit.retryAfterS('bob', 'c')).toBe(0);
    clock.now += 6_000;
    expect(limit.retryAfterS('alice', 'c')).toBe(0);
    // A new window: one attempt does not close it.
    expect(limit.reserve('alice', 'c')).toBe(0);
    expect(limit.retryAfterS('alice', 'c')).toBe(0);
  });

  it('lets at most the limit through of attempts reserved back to back, before any finishes', () => {
    const limit = new SignInLimit({ now: () => 0 });
    const answers = Array.from({ length: 20 }, (_, i) => limit.reserve('olga', `10.0.0.${i}`));
    expect(answers.filter((a) => a === 0)).toHaveLength(5);
    expect(answers.slice(5).every((a) => a === 900)).toBe(true);
  });

  it('closes an address for every name; a success clears its name and takes back only its own reservation on the address', () => {
    const clock = { now: 0 };
    const limit = new SignInLimit({ now: () => clock.now, maxPerName: 3, maxPerAddress: 3, windowMs: 60_000 });
    limit.reserve('a', '10.0.0.1');
    limit.reserve('b', '10.0.0.1');
    limit.reserve('a', '10.0.0.1');
    expect(limit.retryAfterS('zed', '10.0.0.1')).toBe(60);
    expect(limit.retryAfterS('zed', '10.0.0.2')).toBe(0);
    // The last attempt was 'a' with the right password: 'a' is clear, the address has 2 failures.
    limit.succeeded('a', '10.0.0.1');
    expect(limit.retryAfterS('a', '10.0.0.1')).toBe(0);
    limit.reserve('c', '10.0.0.1');
    expect(limit.retryAfterS('a', '10.0.0.1')).toBe(60);
    // An attempt that never checked a password is taken back from both.
    limit.cancelled('c', '10.0.0.1');
    expect(limit.retryAfterS('a', '10.0.0.1')).toBe(0);
  });

  it('counts an IPv6 address by its /64 and an IPv4-mapped one as IPv4', () => {
    expect(addressKey('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:DB8:1:2:ffff:ffff:ffff:ffff')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(addressKey('::1')).toBe('0:0:0:0::/64');
    expect(addressKey('::ffff:10.0.0.7')).toBe('10.0.0.7');
    expect(addressKey('10.0.0.7')).toBe('10.0.0.7');
    const limit = new SignInLimit({ now: () => 0, maxPerName: 100, maxPerAddress: 2 });
    limit.reserve('a', '2001:db8:1:2::1');
    limit.reserve('b', '2001:db8:1:2::2');
    expect(limit.retryAfterS('c', '2001:db8:1:2:ffff::3')).toBe(900);
    expect(limit.retryAfterS('c', '2001:db8:1:3::1')).toBe(0);
  });

  it('tracks at most maxTracked names, forgetting the oldest windows first', () => {
    const clock = { now: 0 };
    const limit = new SignInLimit({ now: () => clock.now, maxPerName: 1, maxPerAddress: 1000, windowMs: 60_000, maxTracked: 3 });
    for (const name of ['n1', 'n2', 'n3', 'n4']) {
      clock.now += 1;
      limit.reserve(name, `ip-${name}`);
    }
    expect(limit.retryAfterS('n1', 'x')).toBe(0);
    expect(limit.retryAfterS('n2', 'x')).toBeGreaterThan(0);
    expect(limit.retryAfterS('n4', 'x')).toBeGreaterThan(0);
  });
});

describe('HashGate', () => {
  it('runs `concurrency` at once, queues `queue` more in order, refuses the rest at once with AUTH_RATE_LIMITED', async () => {
    const gate = new HashGate({ concurrency: 2, queue: 1 });
    const started: number[] = [];
    const finish: Array<() => void> = [];
    const job = (i: number) => () =>
      new Promise<number>((resolve) => {
        started.push(i);
        finish[i] = () => resolve(i);
      });
    const runs = [0, 1, 2].map((i) => gate.run(job(i)));
    const refused = gate.run(job(3));
    await expect(refused).rejects.toMatchObject({ code: 'AUTH_RATE_LIMITED', details: { retryAfterS: 1 } });
    expect(started).toEqual([0, 1]);
    expect(gate.load).toEqual({ running: 2, waiting: 1 });
    finish[0]!();
    expect(await runs[0]).toBe(0);
    // The freed slot went to the queued job, not to a newcomer.
    await new Promise((r) => setImmediate(r));
    expect(started).toEqual([0, 1, 2]);
    finish[1]!();
    finish[2]!();
    expect(await Promise.all(runs)).toEqual([0, 1, 2]);
    expect(gate.load).toEqual({ running: 0, waiting: 0 });
    // A failed hash frees its slot too.
    await expect(gate.run(() => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(gate.load).toEqual({ running: 0, waiting: 0 });
  });
});
