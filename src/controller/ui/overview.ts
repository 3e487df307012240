/**
 * The overview page's figures and plots, from what the controller already keeps (builds and
 * attempts of the last 24 h): queue depth and wait time, build duration and success rate, each
 * Mac's busy/idle share. Plots are server-rendered SVG (no script, no inline style: the CSP
 * allows neither), so the page reads at a glance without JavaScript.
 *
 * Definitions (all over the window [now − 24 h, now]; plots in UTC hours, the last one the
 * current, partial hour):
 * - queue depth at t: builds created by t, not finished by t, and held by no attempt at t (a
 *   requeued build waits again between its attempts); sampled every 15 min and at `now`;
 * - wait: a build's first claim − its creation, counted in the hour of the claim;
 * - duration: finish − start of steps (the first attempt's), of succeeded and failed builds,
 *   in the hour they finished;
 * - success rate: succeeded ÷ (succeeded + failed) of builds finished (cancelled ones are neither);
 * - busy share of a worker: the time its attempts held a slot (claim → end, or now while still
 *   running, clipped to the window) ÷ (24 h × its slots; one slot until it has said how many).
 */
import type { BuildRecord, Store } from '../store/store.ts';
import { linePlot, stackedBarPlot, type LineSeries } from './svg-plot.ts';

export type OverviewStore = Pick<Store, 'listBuildsSince' | 'listAttemptsSince' | 'listWorkers' | 'countBuildsByStatus'>;

/** One plot: a title people read, the SVG markup (trusted: made here, every text in it escaped), and a sentence for screen readers. */
export interface OverviewPlot {
  id: string;
  title: string;
  svg: string;
  summary: string;
}

/** One headline figure: `Queued now: 3`. */
export interface OverviewFigure {
  label: string;
  value: string;
}

export interface OverviewModel {
  /** The window the plots cover, ms: 24 h. */
  windowMs: number;
  figures: OverviewFigure[];
  plots: OverviewPlot[];
  /** True when the window held more builds or attempts than one read takes ({@link OVERVIEW_READ_LIMIT}): the numbers cover the newest. */
  truncated: boolean;
  /** The queue depth plot's samples: builds waiting at `at` (every 15 min from the first hour, and now). */
  queueDepth: { at: number; depth: number }[];
  /** Each worker's busy share of its slot time over the window, % (0–100), by worker id. */
  workerBusy: { workerId: string; busyPercent: number }[];
}

const HOUR_MS = 3_600_000;
const WINDOW_MS = 24 * HOUR_MS;
const QUEUE_SAMPLE_MS = 15 * 60_000;
/** At most this many builds and attempts are read for one overview (a bounded read, whatever the farm's size). */
export const OVERVIEW_READ_LIMIT = 10_000;

/** The overview as of `now` (ms since the epoch; passed in so that tests never read the clock). */
export async function overviewModel(store: OverviewStore, now: number): Promise<OverviewModel> {
  const since = now - WINDOW_MS;
  const [builds, attempts, workers, counts] = await Promise.all([
    store.listBuildsSince(since, OVERVIEW_READ_LIMIT),
    store.listAttemptsSince(since, OVERVIEW_READ_LIMIT),
    store.listWorkers(),
    store.countBuildsByStatus(),
  ]);
  const truncated = builds.length >= OVERVIEW_READ_LIMIT || attempts.length >= OVERVIEW_READ_LIMIT;
  const byId = new Map(builds.map((b) => [b.id, b]));
  const hourStart = Math.floor(now / HOUR_MS) * HOUR_MS - 23 * HOUR_MS;
  const hours = Array.from({ length: 24 }, (_, i) => hourStart + i * HOUR_MS);
  const hourOf = (t: number): number => Math.floor((t - hourStart) / HOUR_MS);
  const xTicks = hours.filter((_, i) => i % 3 === 0).map((x) => ({ x, label: utcHour(x) }));
  const frame = { xMin: hourStart, xMax: hourStart + WINDOW_MS, xTicks };

  // Waits, by the hour of the first claim.
  const waits: number[] = [];
  const waitsByHour = hours.map((): number[] => []);
  for (const a of attempts) {
    const b = byId.get(a.buildId);
    if (a.attempt !== 1 || b === undefined || a.claimedAt < since) continue;
    const wait = Math.max(0, a.claimedAt - b.createdAt);
    waits.push(wait);
    waitsByHour[hourOf(a.claimedAt)]?.push(wait);
  }

  // Durations and outcomes, by the hour of the finish.
  const durations: number[] = [];
  const durationsByHour = hours.map((): number[] => []);
  const outcomesByHour = hours.map(() => ({ ok: 0, failed: 0 }));
  let ok = 0;
  let failed = 0;
  for (const b of builds) {
    if (b.finishedAt === null || b.finishedAt < since || (b.status !== 'succeeded' && b.status !== 'failed')) continue;
    const h = hourOf(b.finishedAt);
    if (b.status === 'succeeded') ok++;
    else failed++;
    const o = outcomesByHour[h];
    if (o !== undefined) {
      if (b.status === 'succeeded') o.ok++;
      else o.failed++;
    }
    if (b.startedAt !== null) {
      const d = Math.max(0, b.finishedAt - b.startedAt);
      durations.push(d);
      durationsByHour[h]?.push(d);
    }
  }

  // Queue depth, sampled.
  const attemptsOf = new Map<string, { from: number; to: number }[]>();
  for (const a of attempts) {
    const list = attemptsOf.get(a.buildId) ?? [];
    list.push({ from: a.claimedAt, to: a.endedAt ?? Infinity });
    attemptsOf.set(a.buildId, list);
  }
  const depthAt = (t: number): number => builds.filter((b) => queuedAt(b, attemptsOf.get(b.id) ?? [], t)).length;
  const samples: { x: number; y: number }[] = [];
  for (let t = hourStart; t < now; t += QUEUE_SAMPLE_MS) samples.push({ x: t, y: depthAt(t) });
  samples.push({ x: now, y: depthAt(now) });
  const maxDepth = Math.max(0, ...samples.map((s) => s.y));

  // Busy share per worker (slot-time).
  const busyMs = new Map<string, number>();
  for (const a of attempts) {
    const from = Math.max(a.claimedAt, since);
    const to = Math.min(a.endedAt ?? now, now);
    if (to > from) busyMs.set(a.workerId, (busyMs.get(a.workerId) ?? 0) + (to - from));
  }
  const shares = workers.map((w) => {
    const busy = Math.min(100, (100 * (busyMs.get(w.id) ?? 0)) / (WINDOW_MS * Math.max(1, w.slotsTotal ?? 1)));
    return { label: w.id, values: [busy, 100 - busy] };
  });

  const running = counts.assigned + counts.preparing + counts.running;
  const created = builds.filter((b) => b.createdAt >= since && b.createdAt <= now).length;
  const rate = ok + failed === 0 ? null : (100 * ok) / (ok + failed);
  const figures: OverviewFigure[] = [
    { label: 'Queued now', value: String(counts.queued) },
    { label: 'Running now', value: String(running) },
    { label: 'Builds in 24 h', value: `${created}${truncated ? '+' : ''}` },
    { label: 'Success rate (24 h)', value: rate === null ? '—' : percent(rate) },
    { label: 'Median wait (24 h)', value: waits.length === 0 ? '—' : duration(quantile(waits, 0.5)) },
    { label: 'Median duration (24 h)', value: durations.length === 0 ? '—' : duration(quantile(durations, 0.5)) },
  ];

  const perHour = (values: number[][], q: number) => values.map((v, i) => ({ x: hours[i]! + HOUR_MS / 2, y: v.length === 0 ? null : quantile(v, q) }));
  const minutes = (ms: number) => ms / 60_000;
  const inMinutes = (series: { x: number; y: number | null }[]) => series.map((p) => ({ x: p.x, y: p.y === null ? null : minutes(p.y) }));
  const medianP90 = (values: number[][]): LineSeries[] => [
    { name: 'median', className: 'series-median', colour: '#2b6cb0', points: inMinutes(perHour(values, 0.5)) },
    { name: 'p90', className: 'series-p90', colour: '#dd6b20', points: inMinutes(perHour(values, 0.9)) },
  ];
  const rateByHour = outcomesByHour.map((o, i) => ({ x: hours[i]! + HOUR_MS / 2, y: o.ok + o.failed === 0 ? null : (100 * o.ok) / (o.ok + o.failed) }));
  const busiest = [...shares].sort((a, b) => b.values[0]! - a.values[0]!)[0];

  const plots: OverviewPlot[] = [
    plot('queue-depth', 'Queue depth', `Builds waiting for a Mac over the last 24 h, every 15 minutes; at most ${maxDepth}, ${samples.at(-1)!.y} now.`, (id, title, description) =>
      linePlot({ id, title, description, ...frame, yMinMax: 4, yFormat: (y) => String(y), steps: true,
        series: [{ name: 'queued', className: 'series-queued', colour: '#2b6cb0', points: samples }] })),
    plot('wait-time', 'Wait time (minutes)', `Time from submission to a Mac taking the build, median and 90th percentile per hour; ${waits.length === 0 ? 'no build was taken in 24 h' : `median over 24 h ${duration(quantile(waits, 0.5))}`}.`, (id, title, description) =>
      linePlot({ id, title, description, ...frame, yFormat: (y) => String(y), series: medianP90(waitsByHour) })),
    plot('build-duration', 'Build duration (minutes)', `Running time of finished builds, median and 90th percentile per hour; ${durations.length === 0 ? 'no build finished in 24 h' : `median over 24 h ${duration(quantile(durations, 0.5))}`}.`, (id, title, description) =>
      linePlot({ id, title, description, ...frame, yFormat: (y) => String(y), series: medianP90(durationsByHour) })),
    plot('success-rate', 'Success rate (%)', `Share of finished builds that succeeded, per hour; ${rate === null ? 'no build finished' : `${percent(rate)} over 24 h (${ok} of ${ok + failed})`}.`, (id, title, description) =>
      linePlot({ id, title, description, ...frame, yMax: 100, yFormat: (y) => `${y}%`,
        series: [{ name: 'succeeded', className: 'series-success', colour: '#2f855a', points: rateByHour }] })),
    plot('worker-busy', 'Busy and idle share per Mac', shares.length === 0 ? 'No worker yet.' : `Share of each worker's slot time spent on builds over the last 24 h; busiest ${busiest!.label} at ${percent(busiest!.values[0]!)}.`, (id, title, description) =>
      stackedBarPlot({ id, title, description, total: 100, format: percent, rows: shares, parts: [
        { name: 'busy', className: 'series-busy', colour: '#2b6cb0' },
        { name: 'idle', className: 'series-idle', colour: '#cbd5e0' },
      ] })),
  ];
  return {
    windowMs: WINDOW_MS,
    figures,
    plots,
    truncated,
    queueDepth: samples.map((p) => ({ at: p.x, depth: p.y })),
    workerBusy: shares.map((w) => ({ workerId: w.label, busyPercent: w.values[0]! })),
  };
}

function plot(id: string, title: string, summary: string, draw: (id: string, title: string, description: string) => string): OverviewPlot {
  return { id, title, summary, svg: draw(`plot-${id}`, title, summary) };
}

/** Whether `b` waited in the queue at `t`: created, not over, and held by none of its attempts. */
function queuedAt(b: BuildRecord, held: readonly { from: number; to: number }[], t: number): boolean {
  if (b.createdAt > t || (b.finishedAt !== null && b.finishedAt <= t)) return false;
  // An active build whose attempts were not read (an old claim) is not counted as waiting.
  if (b.status !== 'queued' && b.finishedAt === null && held.length === 0) return false;
  return !held.some((a) => a.from <= t && t < a.to);
}

/** The q-quantile (0..1) of `values` (not empty), nearest rank. */
export function quantile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/** "14:00" in UTC. */
function utcHour(t: number): string {
  return `${String(new Date(t).getUTCHours()).padStart(2, '0')}:00`;
}

function percent(v: number): string {
  return `${Math.round(v)} %`;
}

/** "42 s", "3 min", "1 h 5 min". */
export function duration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min`;
  return `${Math.floor(m / 60)} h${m % 60 === 0 ? '' : ` ${m % 60} min`}`;
}
