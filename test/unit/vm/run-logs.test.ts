import { mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { pruneRunLogs } from '../../../src/vm/run-logs.ts';

const NOW = Date.parse('2026-06-01T12:00:00Z');
const DAY = 86_400_000;
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'run-logs-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** A file last written `ageDays` before NOW. */
function file(name: string, ageDays: number): void {
  const path = join(dir, name);
  writeFileSync(path, 'log\n');
  const t = (NOW - ageDays * DAY) / 1000;
  utimesSync(path, t, t);
}

const prune = (o: { maxAgeDays?: number; maxFiles?: number; live?: string[] } = {}) =>
  pruneRunLogs({ logDir: dir, workerId: 'w1', maxAgeDays: o.maxAgeDays ?? 7, maxFiles: o.maxFiles ?? 100, liveBuildIds: new Set(o.live ?? []), nowMs: NOW });

describe('pruneRunLogs', () => {
  it('the tart run logs of failed VMs no longer pile up forever: older than the retention go', () => {
    file('expo-w1-old-1.log', 8);
    file('expo-w1-recent-1.log', 6);
    expect(prune().removed).toEqual(['expo-w1-old-1.log']);
    expect(readdirSync(dir)).toEqual(['expo-w1-recent-1.log']);
  });

  it('keeps only the newest maxFiles', () => {
    for (let i = 0; i < 5; i++) file(`expo-w1-b${i}-1.log`, i);
    expect(prune({ maxFiles: 2 }).removed.sort()).toEqual(['expo-w1-b2-1.log', 'expo-w1-b3-1.log', 'expo-w1-b4-1.log']);
    expect(readdirSync(dir).sort()).toEqual(['expo-w1-b0-1.log', 'expo-w1-b1-1.log']);
  });

  it("never touches a running build's log, another worker's, or other files in the directory", () => {
    for (const name of ['expo-w1-live-1.log', 'expo-w2-x-1.log', 'expo-w1-x-y-1.log', 'abc-1.log', 'agent.log', 'expo-w1-x-1.txt']) file(name, 30);
    expect(prune({ maxFiles: 0, live: ['live'] }).removed).toEqual([]);
    expect(readdirSync(dir)).toHaveLength(6);
  });

  it("the agent's local copies of attempt output no longer pile up forever either, bounded apart from the tart run logs", () => {
    const [a, b, c, live] = ['aaaaaaaaaaaaaaaa', 'bbbbbbbbbbbbbbbb', 'cccccccccccccccc', 'dddddddddddddddd'];
    file(`${a}-1.log`, 8);
    file(`${b}-2.log`, 1);
    file(`${c}-1.log`, 2);
    file(`${live}-1.log`, 30);
    file('expo-w1-x-1.log', 0);
    file('expo-w1-y-1.log', 1);
    // Not attempt copies: a name that is no build id, attempt 0, and another worker's clone.
    for (const name of ['short-1.log', `${a}-0.log`, 'expo-w2-x-1.log']) file(name, 30);
    expect(prune({ maxFiles: 1, live: [live] }).removed.sort()).toEqual([`${a}-1.log`, `${c}-1.log`, 'expo-w1-y-1.log'].sort());
    expect(readdirSync(dir).sort()).toEqual([`${a}-0.log`, `${b}-2.log`, `${live}-1.log`, 'expo-w1-x-1.log', 'expo-w2-x-1.log', 'short-1.log'].sort());
  });

  it('a missing log directory is empty', () => {
    expect(pruneRunLogs({ logDir: join(dir, 'nope'), workerId: 'w1', maxAgeDays: 1, maxFiles: 1, liveBuildIds: new Set() })).toEqual({ removed: [], failed: [] });
  });
});
