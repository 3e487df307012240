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
});
