import { describe, expect, test } from 'vitest';
import { TouchBatch, type TouchRow } from '../../src/controller/store/touch-batch.ts';
import type { BuildPulse } from '../../src/controller/store/store.ts';

const pulse: BuildPulse = { status: 'running', cancelRequested: false };

describe('TouchBatch', () => {
  test('writes the touches of one turn in one batch, one build at most once per batch, and a later turn in another', async () => {
    const batches: string[][] = [];
    const t = new TouchBatch((rows: readonly TouchRow[]) => {
      batches.push(rows.map((r) => `${r.id}@${r.now}`));
      return rows.map((r) => (r.lease === 'ok' ? pulse : null));
    });
    const first = await Promise.all([t.touch('a', 'ok', { now: 1 }), t.touch('b', 'no', { now: 2 }), t.touch('a', 'ok', { now: 3 }), t.touch('c', 'ok', { now: 4, progress: 5 })]);
    expect(first).toEqual([pulse, null, pulse, pulse]);
    expect(batches).toEqual([['a@1', 'b@2', 'c@4'], ['a@3']]);
    expect(await t.touch('d', 'ok', { now: 5 })).toEqual(pulse);
    expect(batches).toHaveLength(3);
  });

  test('a failing batch fails each of its callers; a failing row only its own', async () => {
    const boom = new Error('disk I/O error');
    let fail = true;
    const t = new TouchBatch((rows: readonly TouchRow[]) => {
      if (fail) throw boom;
      return rows.map((r) => (r.id === 'bad' ? new Error('row') : pulse));
    });
    const r1 = await Promise.allSettled([t.touch('a', 'ok', { now: 1 }), t.touch('b', 'ok', { now: 1 })]);
    expect(r1).toEqual([{ status: 'rejected', reason: boom }, { status: 'rejected', reason: boom }]);
    fail = false;
    const r2 = await Promise.allSettled([t.touch('a', 'ok', { now: 2 }), t.touch('bad', 'ok', { now: 2 })]);
    expect(r2[0]).toEqual({ status: 'fulfilled', value: pulse });
    expect(r2[1]).toMatchObject({ status: 'rejected', reason: { message: 'row' } });
  });

  test('one flush at a time: the touches of a later turn wait for the write in flight (an asynchronous writer, as on PostgreSQL)', async () => {
    const calls: string[][] = [];
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const t = new TouchBatch(async (rows: readonly TouchRow[]) => {
      calls.push(rows.map((r) => `${r.id}@${r.now}`));
      if (calls.length === 1) await gate;
      return rows.map(() => pulse);
    });
    const turn = () => new Promise((r) => setImmediate(r));
    const first = t.touch('a', 'ok', { now: 1 });
    while (calls.length === 0) await turn();
    const second = t.touch('a', 'ok', { now: 2 });
    for (let i = 0; i < 10; i++) await turn();
    expect(calls).toEqual([['a@1']]);
    release();
    expect(await Promise.all([first, second])).toEqual([pulse, pulse]);
    expect(calls).toEqual([['a@1'], ['a@2']]);
    // `flush` (as `close` calls it) also waits for the write in flight, then writes what is queued.
    let release2: () => void = () => undefined;
    const gate2 = new Promise<void>((r) => (release2 = r));
    const t2 = new TouchBatch(async (rows: readonly TouchRow[]) => {
      calls.push(rows.map((r) => `${r.id}@${r.now}`));
      if (calls.length === 3) await gate2;
      return rows.map(() => pulse);
    });
    const third = t2.touch('b', 'ok', { now: 3 });
    while (calls.length === 2) await turn();
    const fourth = t2.touch('b', 'ok', { now: 4 });
    const closing = t2.flush();
    for (let i = 0; i < 10; i++) await turn();
    expect(calls).toHaveLength(3);
    release2();
    await closing;
    expect(await Promise.all([third, fourth])).toEqual([pulse, pulse]);
    expect(calls.slice(2)).toEqual([['b@3'], ['b@4']]);
  });
});
