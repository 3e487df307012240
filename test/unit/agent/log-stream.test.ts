import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ExpoError } from '../../../src/protocol/errors.ts';
import { LogStream } from '../../../src/agent/log-stream.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'expo-logstream-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** A stand-in controller log: stores by offset like the real one, and can refuse on demand. */
function fakeController(startOffset = 0) {
  let log = Buffer.alloc(startOffset);
  const calls: { offset: number; bytes: number }[] = [];
  let failNext = 0;
  return {
    calls,
    text: () => log.subarray(startOffset).toString('utf8'),
    failNext: (n: number) => (failNext = n),
    forget: () => (log = Buffer.alloc(startOffset)),
    send: async (offset: number, data: string) => {
      calls.push({ offset, bytes: Buffer.byteLength(data) });
      if (failNext > 0) {
        failNext--;
        throw new ExpoError('HTTP_UNREACHABLE', 'controller unreachable');
      }
      const buf = Buffer.from(data, 'utf8');
      if (offset > log.length) throw new ExpoError('HTTP_STATUS', 'gap', { details: { status: 409, code: 'LOG_OFFSET_GAP', expectedOffset: log.length } });
      log = Buffer.concat([log.subarray(0, Math.max(log.length, offset)), buf.subarray(Math.max(0, log.length - offset))]);
      return log.length;
    },
  };
}

describe('LogStream', () => {
  it('sends everything in order, in chunks no larger than the cap, cut on UTF-8 boundaries', async () => {
    const c = fakeController(100);
    const s = new LogStream({ path: join(dir, 'a.log'), startOffset: 100, send: c.send, maxChunkBytes: 16, flushIntervalMs: 10_000 });
    const text = 'héllo wörld — ünïcödé everywhere ✓✓✓\n'.repeat(5);
    for (const ch of text.match(/.{1,7}/gsu)!) s.append(ch);
    expect(await s.close(Date.now() + 5000)).toBe(true);
    expect(c.text()).toBe(text);
    // Delivered whole: the local copy is removed.
    expect(existsSync(join(dir, 'a.log'))).toBe(false);
    expect(Math.max(...c.calls.map((x) => x.bytes))).toBeLessThanOrEqual(16);
    expect(c.calls[0]!.offset).toBe(100);
  });

  it('keeps the bytes on disk while the controller is away and delivers them later', async () => {
    const c = fakeController();
    const errors: unknown[] = [];
    const s = new LogStream({ path: join(dir, 'b.log'), startOffset: 0, send: c.send, flushIntervalMs: 20, onSendError: (e) => errors.push(e) });
    c.failNext(3);
    s.append('line 1\n');
    await new Promise((r) => setTimeout(r, 30));
    s.append('line 2\n');
    expect(await s.close(Date.now() + 5000)).toBe(true);
    expect(c.text()).toBe('line 1\nline 2\n');
    expect(errors.length).toBeGreaterThanOrEqual(1);
  });

  it('resends from the offset the controller expects after a gap', async () => {
    const c = fakeController();
    const s = new LogStream({ path: join(dir, 'c.log'), startOffset: 0, send: c.send, flushIntervalMs: 10_000 });
    s.append('abc');
    await s.flush();
    expect(c.text()).toBe('abc');
    c.forget(); // the controller lost what it had (say, restored from an older backup)
    s.append('def');
    expect(await s.close(Date.now() + 2000)).toBe(true);
    expect(c.text()).toBe('abcdef');
    expect(c.calls.map((x) => x.offset)).toEqual([0, 3, 0]);
  });

  it('stops and reports when the controller says the attempt is over', async () => {
    let over: unknown;
    const s = new LogStream({
      path: join(dir, 'd.log'),
      startOffset: 0,
      flushIntervalMs: 10_000,
      send: async () => {
        throw new ExpoError('HTTP_STATUS', 'stale', { details: { status: 409, code: 'LEASE_STALE' } });
      },
      onAttemptOver: (e) => (over = e),
    });
    s.append('x');
    expect(await s.close(Date.now() + 1000)).toBe(false);
    expect(over).toBeInstanceOf(ExpoError);
    // Not delivered: the local copy stays for an operator, readable by its owner only.
    expect(readFileSync(join(dir, 'd.log'), 'utf8')).toBe('x');
    expect(statSync(join(dir, 'd.log')).mode & 0o777).toBe(0o600);
  });

  it('keeps at most its local cap on disk and says where it stopped', async () => {
    const c = fakeController();
    const dropped: unknown[] = [];
    const s = new LogStream({ path: join(dir, 'f.log'), startOffset: 0, send: c.send, flushIntervalMs: 10_000, maxLocalBytes: 20, onSendError: (e) => dropped.push(e) });
    s.append('0123456789');
    s.append('0123456789');
    s.append('this is over the cap');
    s.append('and so is this');
    expect(await s.close(Date.now() + 2000)).toBe(true);
    expect(c.text()).toBe('01234567890123456789\n[expo-worker] output from here on is not kept: the local cap of 20 bytes was reached\n');
    expect(dropped).toHaveLength(1);
  });

  it('stops sending at the log cap (413) without spinning', async () => {
    let calls = 0;
    const s = new LogStream({
      path: join(dir, 'e.log'),
      startOffset: 0,
      flushIntervalMs: 10_000,
      send: async () => {
        calls++;
        throw new ExpoError('HTTP_STATUS', 'too large', { details: { status: 413, code: 'LOG_TOO_LARGE' } });
      },
    });
    s.append('x'.repeat(10));
    await s.flush();
    s.append('more output that would only fill the disk');
    expect(await s.close(Date.now() + 1000)).toBe(false);
    expect(calls).toBe(1);
    const local = readFileSync(join(dir, 'e.log'), 'utf8');
    expect(local).toContain("output from here on is not kept: the controller's log cap was reached");
    expect(local).not.toContain('more output');
  });

  it('stops streaming on a log conflict (another writer) instead of resending forever, and keeps the local copy', async () => {
    let calls = 0;
    const conflicts: unknown[] = [];
    const s = new LogStream({
      path: join(dir, 'g.log'),
      startOffset: 0,
      flushIntervalMs: 10,
      onConflict: (e) => conflicts.push(e),
      send: async () => {
        calls++;
        throw new ExpoError('HTTP_STATUS', 'conflict', { details: { status: 409, code: 'LOG_CONFLICT' } });
      },
    });
    s.append('our output\n');
    await s.flush();
    s.append('more of it\n');
    // close() ends at once: nothing more is sent, however long the deadline.
    expect(await s.close(Date.now() + 60_000)).toBe(false);
    expect(calls).toBe(1);
    expect(conflicts).toHaveLength(1);
    expect(readFileSync(join(dir, 'g.log'), 'utf8')).toBe('our output\nmore of it\n');
  });

  it('stops sending on a refusal the error table calls final (a revoked key), keeping the local copy', async () => {
    const errors: unknown[] = [];
    let calls = 0;
    const s = new LogStream({
      path: join(dir, 'final.log'),
      startOffset: 0,
      flushIntervalMs: 10_000,
      send: async () => {
        calls++;
        throw new ExpoError('HTTP_STATUS', 'revoked', { details: { status: 401, code: 'AUTH_INVALID' } });
      },
      onSendError: (e) => errors.push(e),
    });
    s.append('output\n');
    expect(await s.close(Date.now() + 60_000)).toBe(false);
    expect(calls).toBe(1);
    expect(errors).toHaveLength(1);
    expect(existsSync(join(dir, 'final.log'))).toBe(true);
  });

  it('a retry of its own chunk that already landed is not a conflict', async () => {
    const c = fakeController();
    let lost = 1;
    const conflicts: unknown[] = [];
    const s = new LogStream({
      path: join(dir, 'h.log'),
      startOffset: 0,
      flushIntervalMs: 10_000,
      onConflict: (e) => conflicts.push(e),
      // The first answer is lost after the controller stored the chunk: the agent sends it again.
      send: async (offset, data) => {
        const size = await c.send(offset, data);
        if (lost-- > 0) throw new ExpoError('HTTP_UNREACHABLE', 'answer lost');
        return size;
      },
    });
    s.append('landed once\n');
    await s.flush();
    expect(await s.close(Date.now() + 5000)).toBe(true);
    expect(c.text()).toBe('landed once\n');
    expect(conflicts).toHaveLength(0);
  });
});
