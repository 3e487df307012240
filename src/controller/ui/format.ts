/** Words and numbers the pages show: durations, times, a build's source and its ending. */
import { isActiveStatus } from '../../protocol/domain.ts';
import type { BuildRecord } from '../store/store.ts';
import { endWords } from '../github-report-text.ts';
import { stepTimes } from '../views.ts';

/** `42 s`, `3 min 5 s`, `2 h 4 min`. */
export function durationWords(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

/** How long the build has run (to now while active); empty before it starts. */
export function buildDuration(b: BuildRecord, now: number): string {
  const from = b.startedAt ?? b.assignedAt;
  if (from === null) return '';
  const to = b.finishedAt ?? (isActiveStatus(b.status) ? now : null);
  return to === null ? '' : durationWords(to - from);
}

/**
 * Each step's duration as the build page shows it: `12 s` once over, `running for 5 s` for the
 * step a running build is in, `—` for a step not started (or whose start its agent did not
 * report — older agents report none).
 */
export function stepDurationWords(b: BuildRecord, now: number): string[] {
  return stepTimes(b).map((t, i) => {
    if (t.durationS !== null) return durationWords(t.durationS * 1000);
    const start = b.stepStartedAt[i] ?? null;
    if (start !== null && b.status === 'running') return `running for ${durationWords(now - start)}`;
    return '—';
  });
}

/** A time as people read it in a table: `2026-12-03 12:40:05 UTC`; empty for none. */
export function timeWords(ms: number | null): string {
  if (ms === null) return '';
  return `${new Date(ms).toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}

/** Where a build came from: `owner/repo main @ 1a2b3c4` (or `api` for a build submitted through the API). */
export function sourceWords(b: BuildRecord): string {
  if (b.source === null) return 'api';
  const ref = b.source.ref.replace(/^refs\/(heads|tags)\//, '');
  return `${b.source.repo} ${ref} @ ${b.source.sha.slice(0, 7)}`;
}

/** Why a failed (or cancelled) build ended, in the words its GitHub report uses, with its message. */
export function failureWords(b: BuildRecord): string | null {
  if (b.status !== 'failed' && b.status !== 'cancelled') return null;
  const words = endWords(b);
  return b.message === null || b.message === '' ? words : `${words} — ${b.message}`;
}
