/**
 * The overview's numbers and SVG, from a real SQLite store holding hand-made builds and attempts
 * at fixed times (no wall clock: `now` is passed in). The SVG is parsed as XML by a real Chromium
 * (DOMParser, image/svg+xml), the same engine that shows the page.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { SqliteStore } from '../../../src/controller/store/sqlite-store.ts';
import type { NewBuild } from '../../../src/controller/store/store.ts';
import { overviewModel, type OverviewModel } from '../../../src/controller/ui/overview.ts';
import { launchBrowser, type BrowserSession } from '../../support/browser.ts';

const H = 3_600_000;
const M = 60_000;
/** 2026-01-15 12:30 UTC. */
const NOW = Date.UTC(2026, 0, 15, 12, 30);
const EVIL = 'evil<&">\'w';

let n = 0;
const newBuild = (createdAt: number, labels: string[] = []): NewBuild => ({
  id: `b${String(++n).padStart(15, '0')}`,
  steps: [{ name: 's', run: 'true' }],
  env: {},
  secretEnvNames: [],
  secretEnvSealed: null,
  labels,
  artifacts: [],
  timeoutS: 3600,
  maxAttempts: 1,
  createdAt,
});

let store: SqliteStore;
beforeEach(async () => {
  store = new SqliteStore({ path: ':memory:' });
  await store.migrate();
});
afterEach(async () => {
  await store.close();
});

let browser: BrowserSession;
beforeAll(async () => {
  browser = await launchBrowser();
});
afterAll(async () => {
  await browser?.close();
});

/** Claims the oldest claimable build for `workerId` at `at`, starts its steps a minute later, and finishes it at `end` (unless null). */
async function run(workerId: string, at: number, end: number | null, status: 'succeeded' | 'failed' = 'succeeded'): Promise<string> {
  const lease = `lease-${++n}`;
  const c = await store.claimBuild({ workerId, workerLabels: [], now: at, lease, buildTokenHash: `t-${n}`, attemptBanner: () => '' });
  if (c === null) throw new Error(`nothing for ${workerId} to claim`);
  await store.setBuildPhase(c.build.id, lease, ['assigned'], 'running', at + M);
  if (end !== null) {
    await store.finishAttempt({ buildId: c.build.id, lease, now: end, status, failureReason: status === 'failed' ? 'build_failed' : null, exitCode: status === 'failed' ? 1 : 0, message: null, requeue: false });
  }
  return c.build.id;
}

/** Two workers and one with a hostile id, and builds that start before the window, in it, and wait still. */
async function farm(): Promise<void> {
  for (const id of ['w1', 'w2', EVIL]) await store.createWorker({ id, labels: [], keyHash: `k-${id}`, createdAt: 0 });
  await store.touchWorker('w1', { now: NOW, slotsTotal: 1 });
  await store.touchWorker('w2', { now: NOW, slotsTotal: 2 });
  // w2 (2 slots) holds a build from 30 h ago until 12 h ago: 12 h inside the window = 25 % of 2 × 24 h.
  await store.createBuild(newBuild(NOW - 30 * H));
  await run('w2', NOW - 30 * H, NOW - 12 * H);
  // w1 (1 slot) waits 10 min for its build, then is busy 6 h: 25 %.
  await store.createBuild(newBuild(NOW - 10 * H));
  await run('w1', NOW - 10 * H + 10 * M, NOW - 4 * H + 10 * M);
  // Queued 3 h ago and never claimable: waits still.
  await store.createBuild(newBuild(NOW - 3 * H, ['nobody-has-this']));
  // The hostile worker waits 20 min for a build that fails after 40 min.
  await store.createBuild(newBuild(NOW - 2 * H));
  await run(EVIL, NOW - 2 * H + 20 * M, NOW - H, 'failed');
}

const figure = (m: OverviewModel, label: string) => m.figures.find((f) => f.label === label)?.value;
const depthAt = (m: OverviewModel, at: number) => m.queueDepth.find((s) => s.at === at)?.depth;

/** What Chromium's XML parser says of `svg`: null when well-formed, else its error text. */
async function xmlError(svg: string): Promise<string | null> {
  const page = await browser.newPage();
  try {
    return await page.evaluate((text) => {
      // This runs in the page; the project's TypeScript has no DOM types, so DOMParser is named here.
      type Doc = { querySelector(s: string): { textContent: string | null } | null; documentElement: { localName: string } };
      const { DOMParser } = globalThis as unknown as { DOMParser: new () => { parseFromString(t: string, type: string): Doc } };
      const doc = new DOMParser().parseFromString(text, 'image/svg+xml');
      const err = doc.querySelector('parsererror');
      if (err !== null) return err.textContent ?? 'parsererror';
      return doc.documentElement.localName === 'svg' ? null : `root is ${doc.documentElement.localName}`;
    }, svg);
  } finally {
    await page.close();
  }
}

describe('overviewModel', () => {
  it('counts the figures of the last 24 h: queued and running now, builds, success rate, median wait and duration', async () => {
    await farm();
    const m = await overviewModel(store, NOW);
    expect(m.windowMs).toBe(24 * H);
    expect(m.truncated).toBe(false);
    expect(Object.fromEntries(m.figures.map((f) => [f.label, f.value]))).toEqual({
      'Queued now': '1',
      'Running now': '0',
      // The one from 30 h ago was created before the window.
      'Builds in 24 h': '3',
      // w2's finished 12 h ago, inside the window, whatever its start: 2 succeeded, 1 failed.
      'Success rate (24 h)': '67 %',
      // Waits 10 and 20 min (nearest rank: the lower; w2's was claimed before the window);
      // durations 39 min, 5 h 59 min and 17 h 59 min.
      'Median wait (24 h)': '10 min',
      'Median duration (24 h)': '5 h 59 min',
    });
    expect(m.plots.map((p) => p.id)).toEqual(['queue-depth', 'wait-time', 'build-duration', 'success-rate', 'worker-busy']);
    expect(m.plots.find((p) => p.id === 'success-rate')?.summary).toContain('67 % over 24 h (2 of 3)');
  });

  it('knows the queue depth at an hour: a build waits from its submission until its claim, and while never claimed', async () => {
    await farm();
    const m = await overviewModel(store, NOW);
    // Samples every 15 min from 13:00 the day before (the first whole hour in the window) to now.
    expect(m.queueDepth[0]!.at).toBe(Date.UTC(2026, 0, 14, 13, 0));
    expect(m.queueDepth.at(-1)).toEqual({ at: NOW, depth: 1 });
    expect(depthAt(m, NOW - 10 * H)).toBe(1); // 02:30: submitted this instant, claimed at 02:40
    expect(depthAt(m, NOW - 10 * H + 15 * M)).toBe(0);
    expect(depthAt(m, NOW - 3 * H)).toBe(1); // 09:30: the unclaimable one arrives
    expect(depthAt(m, NOW - 2 * H)).toBe(2); // 10:30: and the hostile worker's, for 20 min
    expect(depthAt(m, NOW - 2 * H + 30 * M)).toBe(1);
    expect(Math.max(...m.queueDepth.map((s) => s.depth))).toBe(2);
  });

  it("gives each worker's busy share of its slot time, clipped to the window: busy 6 of 24 h is 25 %", async () => {
    await farm();
    const m = await overviewModel(store, NOW);
    const busy = Object.fromEntries(m.workerBusy.map((w) => [w.workerId, w.busyPercent]));
    expect(busy.w1).toBeCloseTo(25, 9);
    expect(busy.w2).toBeCloseTo(25, 9);
    expect(busy[EVIL]).toBeCloseTo((100 * 40) / (24 * 60), 9);
    const svg = m.plots.find((p) => p.id === 'worker-busy')!.svg;
    expect(svg).toContain('<title>w1: busy 25 %</title>');
    expect(svg).toContain('<title>w1: idle 75 %</title>');
  });

  it('counts a build still running as busy until now and not as waiting', async () => {
    await store.createWorker({ id: 'w1', labels: [], keyHash: 'k', createdAt: 0 });
    await store.createBuild(newBuild(NOW - 2 * H));
    await run('w1', NOW - 2 * H, null);
    const m = await overviewModel(store, NOW);
    expect(m.workerBusy.map((w) => w.workerId)).toEqual(['w1']);
    expect(m.workerBusy[0]!.busyPercent).toBeCloseTo((100 * 2) / 24, 9);
    expect(depthAt(m, NOW)).toBe(0);
    expect(figure(m, 'Running now')).toBe('1');
  });

  it('renders an empty farm: zeros, dashes and plots with nothing drawn', async () => {
    const m = await overviewModel(store, NOW);
    expect(m.figures.map((f) => f.value)).toEqual(['0', '0', '0', '—', '—', '—']);
    expect(m.workerBusy).toEqual([]);
    expect(m.queueDepth.every((s) => s.depth === 0)).toBe(true);
    for (const p of m.plots) {
      expect(p.svg.startsWith('<svg ')).toBe(true);
      expect(await xmlError(p.svg)).toBeNull();
    }
    expect(m.plots.find((p) => p.id === 'worker-busy')!.svg).toContain('no data');
  });

  it('escapes a worker id with <&"\' in it, and every plot parses as accessible SVG with no style attribute or script', async () => {
    await farm();
    const m = await overviewModel(store, NOW);
    const busy = m.plots.find((p) => p.id === 'worker-busy')!;
    expect(busy.svg).not.toContain('evil<');
    expect(busy.svg).toContain('evil&#60;&#38;&#34;&#62;&#39;w');
    // The parser is a real one: it refuses what is not well-formed.
    expect(await xmlError('<svg xmlns="http://www.w3.org/2000/svg"><text>evil<&"></text></svg>')).not.toBeNull();
    for (const p of m.plots) {
      expect(await xmlError(p.svg), p.id).toBeNull();
      expect(p.svg).toMatch(new RegExp(`^<svg [^>]*role="img" aria-labelledby="plot-${p.id}-title plot-${p.id}-desc"`));
      expect(p.svg).toContain(`<title id="plot-${p.id}-title">`);
      expect(p.svg).not.toMatch(/\sstyle=|<script|\son\w+=/i);
    }
    // Time labels are UTC hours from the window, whatever the machine's zone.
    expect(m.plots[0]!.svg).toContain('>13:00<');
    expect(m.plots[0]!.svg).toContain('>10:00<');
  });
});
