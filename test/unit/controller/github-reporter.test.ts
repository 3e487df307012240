/**
 * The GitHub reporter over a fake clock, an in-memory store (the port's report semantics:
 * `listBuildsToReport` lists builds with a source not reported as far as they go — pending,
 * running, final — oldest first; `setReported` only moves forward) and a fake GitHub API that records every call and fails
 * the calls a test tells it to. No real time passes.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ControllerMetrics } from '../../../src/controller/metrics.ts';
import { GithubReporter, type GithubReporterOptions, type GithubReportResult } from '../../../src/controller/github-reporter.ts';
import { DESCRIPTION_MAX_CHARS, TAIL_MAX_LINES, OUTPUT_MAX_CHARS, TITLE_MAX_CHARS } from '../../../src/controller/github-report-text.ts';
import type { BuildRecord, ReportStage } from '../../../src/controller/store/store.ts';
import type { CheckRunUpdate, CommitStatus, GithubApi, NewCheckRun } from '../../../src/github/api.ts';
import { ExpoError } from '../../../src/protocol/errors.ts';
import type { BuildSource } from '../../../src/protocol/schemas.ts';
import { FakeClock } from '../../support/fake-clock.ts';
import { captureLogger } from '../../support/fake-runner-ports.ts';

const SHA = 'a'.repeat(40);
const NEW_SHA = 'b'.repeat(40);
const PUBLIC_URL = 'https://ci.example.com/';

const source = (over: Partial<BuildSource> = {}): BuildSource => ({
  projectId: 'pppppppppppppppp',
  repo: 'octo/app',
  name: 'ios',
  event: 'push',
  ref: 'refs/heads/main',
  sha: SHA,
  prNumber: null,
  deliveryId: 'd1',
  rerunOf: null,
  cloneUrl: 'https://github.com/octo/app.git',
  checkout: { submodules: false, lfs: false },
  ...over,
});

let seq = 0;
const build = (over: Partial<BuildRecord> = {}): BuildRecord => {
  seq++;
  return {
    id: `build${String(seq).padStart(11, 'a')}`,
    status: 'queued',
    steps: [{ name: 's', run: 'true' }],
    env: {},
    secretEnvNames: [],
    secretEnvSealed: null,
    labels: [],
    timeoutS: 600,
    maxAttempts: 2,
    artifacts: [],
    artifactProblems: [],
    attempt: 0,
    workerId: null,
    lease: null,
    progress: null,
    failureReason: null,
    message: null,
    exitCode: null,
    cancelRequested: false,
    logBytes: 0,
    createdAt: seq,
    assignedAt: null,
    startedAt: null,
    stepStartedAt: [null],
    finishedAt: null,
    lastHeartbeatAt: null,
    source: source(),
    reported: null,
    checkRunId: null,
    ...over,
  };
};

const runningOn = (b: BuildRecord, workerId = 'mac-1', attempt = 1): Partial<BuildRecord> => ({ status: 'running', attempt, workerId, assignedAt: b.createdAt + 1000, startedAt: b.createdAt + 2000 });
const succeeded = (b: BuildRecord): Partial<BuildRecord> => ({ status: 'succeeded', attempt: 1, workerId: 'mac-1', assignedAt: b.createdAt + 1000, startedAt: b.createdAt + 2000, finishedAt: b.createdAt + 194_000 });

const RANK: Record<ReportStage, number> = { pending: 0, running: 1, final: 2 };

/** The report part of the store, in memory, as the port documents it. */
class FakeReportStore {
  readonly builds = new Map<string, BuildRecord>();
  readonly logs = new Map<string, Buffer>();
  readonly calls: string[] = [];
  /** Makes `listBuildsToReport` wait for this before answering, when set. */
  gate: Promise<void> | null = null;
  failList: Error | null = null;

  add(b: BuildRecord, log?: string): BuildRecord {
    this.builds.set(b.id, b);
    if (log !== undefined) {
      this.logs.set(b.id, Buffer.from(log));
      b.logBytes = Buffer.byteLength(log);
    }
    return b;
  }

  update(id: string, over: Partial<BuildRecord>): void {
    const b = this.builds.get(id);
    if (!b) throw new Error(`no build ${id}`);
    Object.assign(b, over);
  }

  async listBuildsToReport(limit: number): Promise<BuildRecord[]> {
    this.calls.push('list');
    if (this.gate) await this.gate;
    if (this.failList) throw this.failList;
    const final = (b: BuildRecord): boolean => ['succeeded', 'failed', 'cancelled'].includes(b.status);
    const behind = (b: BuildRecord): boolean =>
      b.reported === null || (b.reported === 'pending' && (b.status === 'running' || final(b))) || (b.reported === 'running' && final(b));
    return [...this.builds.values()]
      .filter((b) => b.source !== null && behind(b))
      .sort((x, y) => x.createdAt - y.createdAt)
      .slice(0, limit)
      .map((b) => structuredClone(b));
  }

  async setReported(id: string, stage: ReportStage, checkRunId?: number): Promise<boolean> {
    this.calls.push(`setReported ${id} ${stage}`);
    const b = this.builds.get(id);
    if (!b) return false;
    if (b.reported !== null && RANK[b.reported] > RANK[stage]) return true;
    b.reported = stage;
    if (checkRunId !== undefined) b.checkRunId = checkRunId;
    return true;
  }

  async getBuild(id: string): Promise<BuildRecord | null> {
    const b = this.builds.get(id);
    return b ? structuredClone(b) : null;
  }

  async readLog(id: string, from: number): Promise<Buffer> {
    return (this.logs.get(id) ?? Buffer.alloc(0)).subarray(from);
  }
}

type ApiCall =
  | { kind: 'status'; repo: string; sha: string; status: CommitStatus }
  | { kind: 'create'; repo: string; run: NewCheckRun }
  | { kind: 'update'; repo: string; id: number; update: CheckRunUpdate };

/** GitHub as the reporter sees it: every call recorded (failed ones too); `fail` decides which fail. */
class FakeGithub implements Pick<GithubApi, 'mode' | 'createStatus' | 'createCheckRun' | 'updateCheckRun'> {
  readonly calls: ApiCall[] = [];
  fail: ((call: ApiCall) => Error | undefined) | null = null;
  /** When set, every call waits for it. */
  hang: Promise<void> | null = null;
  private nextId = 100;
  readonly mode: 'none' | 'token' | 'app';
  constructor(mode: 'none' | 'token' | 'app') {
    this.mode = mode;
  }

  private async record(call: ApiCall): Promise<void> {
    this.calls.push(call);
    if (this.hang) await this.hang;
    const err = this.fail?.(call);
    if (err) throw err;
  }
  async createStatus(repo: string, sha: string, status: CommitStatus): Promise<void> {
    await this.record({ kind: 'status', repo, sha, status });
  }
  async createCheckRun(repo: string, run: NewCheckRun): Promise<number> {
    await this.record({ kind: 'create', repo, run });
    return this.nextId++;
  }
  async updateCheckRun(repo: string, id: number, update: CheckRunUpdate): Promise<void> {
    await this.record({ kind: 'update', repo, id, update });
  }
  statuses(): CommitStatus[] {
    return this.calls.flatMap((c) => (c.kind === 'status' ? [c.status] : []));
  }
}

const unreachable = (retryAfterMs?: number): ExpoError =>
  new ExpoError('GITHUB_UNREACHABLE', 'GitHub answered 503', { details: retryAfterMs === undefined ? {} : { retryAfterMs } });
const refused = (status: number): ExpoError => new ExpoError('GITHUB_STATUS', `GitHub answered ${status}`, { details: { status } });

const running: GithubReporter[] = [];
afterEach(async () => {
  for (const r of running.splice(0)) await r.stop();
});

function setup(mode: 'none' | 'token' | 'app', over: Partial<GithubReporterOptions> = {}, shared?: { store: FakeReportStore; clock: FakeClock }) {
  const clock = shared?.clock ?? new FakeClock();
  const store = shared?.store ?? new FakeReportStore();
  const api = new FakeGithub(mode);
  const { log, lines } = captureLogger();
  const results: GithubReportResult[] = [];
  const reporter = new GithubReporter({ store, api, publicUrl: PUBLIC_URL, clock, logger: log, onReport: (r) => results.push(r), ...over });
  running.push(reporter);
  const warnings = () => lines.filter((l) => l.level === 40);
  return { clock, store, api, lines, warnings, results, reporter };
}

describe('GithubReporter: commit statuses (token)', () => {
  it('reports pending for a queued build, pending "running on <worker>" once it runs, then success when it ends, linking to the build', async () => {
    const { clock, store, api, reporter } = setup('token');
    const b = store.add(build());
    reporter.start();
    await clock.settle();
    expect(api.calls).toEqual([
      { kind: 'status', repo: 'octo/app', sha: SHA, status: { state: 'pending', context: 'expo-worker/ios', description: 'queued', targetUrl: `https://ci.example.com/builds/${b.id}` } },
    ]);
    expect(store.builds.get(b.id)?.reported).toBe('pending');

    // Assigned and preparing say nothing new; running does.
    for (const status of ['assigned', 'preparing'] as const) {
      store.update(b.id, { status, workerId: 'mac-1', attempt: 1 });
      reporter.notify();
      await clock.settle();
    }
    expect(api.calls).toHaveLength(1);
    store.update(b.id, runningOn(b));
    reporter.notify();
    await clock.settle();
    expect(api.calls[1]).toEqual({
      kind: 'status',
      repo: 'octo/app',
      sha: SHA,
      status: { state: 'pending', context: 'expo-worker/ios', description: 'running on mac-1', targetUrl: `https://ci.example.com/builds/${b.id}` },
    });
    expect(store.builds.get(b.id)?.reported).toBe('running');

    store.update(b.id, succeeded(b));
    reporter.notify();
    await clock.settle();
    expect(api.statuses().map((s) => [s.state, s.description])).toEqual([
      ['pending', 'queued'],
      ['pending', 'running on mac-1'],
      ['success', 'succeeded in 3m 12s'],
    ]);
    expect(store.builds.get(b.id)?.reported).toBe('final');
    reporter.notify();
    await clock.advance(5 * 60_000); // sweeps find nothing left
    expect(api.calls).toHaveLength(3);
  });

  it('a build queued again after it ran still shows running (nothing new is posted) until it ends', async () => {
    const { clock, store, api, reporter } = setup('token');
    const b = store.add(build());
    store.update(b.id, runningOn(b));
    reporter.start();
    await clock.settle();
    for (const over of [{ status: 'queued', workerId: null, failureReason: 'vm_crashed' }, { status: 'preparing', workerId: 'mac-2', attempt: 2 }, runningOn(b, 'mac-2', 2)] as const) {
      store.update(b.id, over);
      reporter.notify();
      await clock.advance(60_000);
    }
    expect(api.statuses().map((s) => s.description)).toEqual(['running on mac-1']);
    store.update(b.id, { ...succeeded(b), attempt: 2, workerId: 'mac-2' });
    reporter.notify();
    await clock.settle();
    expect(api.statuses().map((s) => [s.state, s.description])).toEqual([
      ['pending', 'running on mac-1'],
      ['success', 'succeeded in 3m 12s'],
    ]);
  });

  it('a build that ends before its running was reported goes from pending straight to its end', async () => {
    const { clock, store, api, reporter } = setup('token');
    const b = store.add(build());
    reporter.start();
    await clock.settle();
    store.update(b.id, runningOn(b));
    store.update(b.id, succeeded(b));
    reporter.notify();
    await clock.settle();
    expect(api.statuses().map((s) => s.state)).toEqual(['pending', 'success']);
    expect(store.builds.get(b.id)?.reported).toBe('final');
  });

  it('says where a build already claimed runs, and gives no link without a public URL', async () => {
    const { clock, store, api, reporter } = setup('token', { publicUrl: null });
    store.add(build({ status: 'running', attempt: 1, workerId: 'mac-1' }));
    reporter.start();
    await clock.settle();
    expect(api.statuses()).toEqual([{ state: 'pending', context: 'expo-worker/ios', description: 'running on mac-1', targetUrl: null }]);
    expect([...store.builds.values()][0]?.reported).toBe('running');
  });

  it("the build's own failures are failure; infrastructure failures are error, with the reason in words", async () => {
    const { clock, store, api, reporter } = setup('token');
    const fin = { reported: 'pending' as const, attempt: 2, workerId: 'mac-1', finishedAt: 10 };
    store.add(build({ ...fin, status: 'failed', failureReason: 'build_failed', exitCode: 2, message: 'step "build" exited 2' }));
    store.add(build({ ...fin, status: 'failed', failureReason: 'timed_out', message: null }));
    store.add(build({ ...fin, status: 'failed', failureReason: 'artifact_missing', message: 'build-*.ipa matched nothing' }));
    store.add(build({ ...fin, status: 'failed', failureReason: 'vm_crashed', message: 'the VM stopped\nunexpectedly' }));
    store.add(build({ ...fin, status: 'failed', failureReason: 'worker_lost', message: 'worker mac-1 silent for 60s' }));
    reporter.start();
    await clock.settle();
    expect(api.statuses().map((s) => [s.state, s.description])).toEqual([
      ['failure', 'failed: a step failed (exit 2): step "build" exited 2'],
      ['failure', 'timed out after 600 s'],
      ['failure', 'failed: a required artifact is missing: build-*.ipa matched nothing'],
      ['error', 'failed: the VM crashed (infrastructure): the VM stopped unexpectedly'],
      ['error', 'failed: its worker went silent (infrastructure): worker mac-1 silent for 60s'],
    ]);
  });

  it('a build cancelled because a newer push superseded it is error, saying so', async () => {
    const { clock, store, api, reporter } = setup('token');
    store.add(build({ status: 'cancelled', message: `superseded by ${NEW_SHA}`, finishedAt: 5 }));
    reporter.start();
    await clock.settle();
    expect(api.statuses().map((s) => [s.state, s.description])).toEqual([['error', `cancelled: superseded by ${NEW_SHA}`]]);
  });

  it('descriptions stay within 140 characters', async () => {
    const { clock, store, api, reporter } = setup('token');
    store.add(build({ status: 'failed', failureReason: 'build_failed', exitCode: 1, message: 'é'.repeat(10_000) }));
    store.add(build({ status: 'running', workerId: 'w'.repeat(63) }));
    reporter.start();
    await clock.settle();
    const [a, b] = api.statuses();
    expect(Array.from(a!.description)).toHaveLength(DESCRIPTION_MAX_CHARS);
    expect(a!.description.endsWith('é…')).toBe(true);
    expect(Array.from(b!.description).length).toBeLessThanOrEqual(DESCRIPTION_MAX_CHARS);
  });
});

describe('GithubReporter: check runs (GitHub App)', () => {
  it('creates a queued check run, then completes it with the reason and the log tail', async () => {
    const { clock, store, api, reporter } = setup('app');
    const lines = Array.from({ length: 300 }, (_, i) => `line ${i} \u001b[32mgreen\u001b[0m`);
    const b = store.add(build(), '');
    reporter.start();
    await clock.settle();
    expect(api.calls).toEqual([
      {
        kind: 'create',
        repo: 'octo/app',
        run: { name: 'expo-worker/ios', headSha: SHA, status: 'queued', externalId: b.id, detailsUrl: `https://ci.example.com/builds/${b.id}`, output: { title: 'Queued', summary: 'Queued.' } },
      },
    ]);
    expect(store.builds.get(b.id)).toMatchObject({ reported: 'pending', checkRunId: 100 });

    const log = `${lines.join('\n')}\nprogress 10%\rprogress 100%\u0007\n`;
    store.update(b.id, { status: 'failed', failureReason: 'vm_crashed', message: 'the VM stopped', attempt: 2, workerId: 'mac-2', assignedAt: 1000, startedAt: 2000, finishedAt: 62_000 });
    store.logs.set(b.id, Buffer.from(log));
    store.update(b.id, { logBytes: Buffer.byteLength(log) });
    reporter.notify();
    await clock.settle();
    expect(api.calls).toHaveLength(2);
    const call = api.calls[1]!;
    if (call.kind !== 'update') throw new Error(`expected an update, got ${call.kind}`);
    expect(call.id).toBe(100);
    expect(call.update).toMatchObject({ status: 'completed', conclusion: 'failure', detailsUrl: `https://ci.example.com/builds/${b.id}` });
    const out = call.update.output!;
    expect(out.title).toBe('Failed: the VM crashed (infrastructure)');
    for (const part of ['`vm_crashed`', 'Attempt:** 2 of 2', 'Duration:** 1m 0s', '`mac-2`', 'the VM stopped', `[${b.id}](https://ci.example.com/builds/${b.id})`]) expect(out.summary).toContain(part);
    const text = out.text!;
    expect(text).not.toContain('\u001b');
    expect(text).toContain('line 299 green\nprogress 100%\n```');
    expect(text).not.toContain('line 200 ');
    expect(text).toContain(`line ${300 - TAIL_MAX_LINES + 1} green`);
    expect(text.match(/^```$/gm)).toHaveLength(2);
    expect(store.builds.get(b.id)).toMatchObject({ reported: 'final', checkRunId: 100 });
  });

  it('moves the check run to in_progress when the build runs, then completes the same run', async () => {
    const { clock, store, api, reporter } = setup('app');
    const b = store.add(build(), 'step one\n');
    reporter.start();
    await clock.settle();
    store.update(b.id, runningOn(b));
    reporter.notify();
    await clock.settle();
    const link = `https://ci.example.com/builds/${b.id}`;
    expect(api.calls[1]).toEqual({ kind: 'update', repo: 'octo/app', id: 100, update: { status: 'in_progress', detailsUrl: link, output: { title: 'Running on mac-1', summary: 'Running on mac-1.' } } });
    expect(store.builds.get(b.id)).toMatchObject({ reported: 'running', checkRunId: 100 });
    store.update(b.id, succeeded(b));
    reporter.notify();
    await clock.settle();
    expect(api.calls.map((c) => (c.kind === 'create' ? `create ${c.run.status}` : c.kind === 'update' ? `update ${c.id} ${c.update.status}` : c.kind))).toEqual([
      'create queued',
      'update 100 in_progress',
      'update 100 completed',
    ]);
    expect(store.builds.get(b.id)).toMatchObject({ reported: 'final', checkRunId: 100 });
  });

  it('a build first seen running gets its check run created in_progress; one whose queued run was refused gets one then', async () => {
    const { clock, store, api, reporter } = setup('app');
    const seen = store.add(build());
    store.update(seen.id, runningOn(seen, 'mac-3'));
    const refusedFirst = store.add(build());
    api.fail = (c) => (c.kind === 'create' && c.run.externalId === refusedFirst.id && c.run.status === 'queued' ? refused(422) : undefined);
    reporter.start();
    await clock.settle();
    store.update(refusedFirst.id, runningOn(refusedFirst));
    reporter.notify();
    await clock.settle();
    expect(api.calls.map((c) => (c.kind === 'create' ? [c.run.externalId, c.run.status, c.run.output?.title] : c.kind))).toEqual([
      [seen.id, 'in_progress', 'Running on mac-3'],
      [refusedFirst.id, 'queued', 'Queued'],
      [refusedFirst.id, 'in_progress', 'Running on mac-1'],
    ]);
    expect(store.builds.get(seen.id)).toMatchObject({ reported: 'running', checkRunId: 100 });
    expect(store.builds.get(refusedFirst.id)).toMatchObject({ reported: 'running', checkRunId: 101 });
    store.update(seen.id, succeeded(seen));
    reporter.notify();
    await clock.settle();
    expect(api.calls.at(-1)).toMatchObject({ kind: 'update', id: 100, update: { status: 'completed', conclusion: 'success' } });
  });

  it('a build first seen final gets one check run, created completed', async () => {
    const { clock, store, api, reporter } = setup('app');
    const b = store.add(build({ status: 'cancelled', message: `superseded by ${NEW_SHA}`, finishedAt: 5 }));
    const t = store.add(build({ status: 'failed', failureReason: 'timed_out', finishedAt: 5 }), 'still going\n');
    reporter.start();
    await clock.settle();
    expect(api.calls.map((c) => (c.kind === 'create' ? [c.run.externalId, c.run.status, c.run.conclusion, c.run.output?.title] : c.kind))).toEqual([
      [b.id, 'completed', 'cancelled', `Cancelled: superseded by ${NEW_SHA}`],
      [t.id, 'completed', 'timed_out', 'Timed out after 600 s'],
    ]);
    expect(store.builds.get(b.id)).toMatchObject({ reported: 'final', checkRunId: 100 });
    expect(store.builds.get(t.id)).toMatchObject({ reported: 'final', checkRunId: 101 });
  });

  it('titles, summaries and log text stay within GitHub limits, a log with backticks stays in its block', async () => {
    const { clock, store, api, reporter } = setup('app');
    const longLines = Array.from({ length: 50 }, (_, i) => `${i} ${'x'.repeat(5_000)}`).join('\n');
    store.add(build({ status: 'failed', failureReason: 'build_failed', exitCode: 1, message: `${'m'.repeat(100_000)}`, finishedAt: 5 }), `\`\`\`\`\` fence\n${longLines}\n`);
    store.add(build({ status: 'cancelled', message: 'c'.repeat(1_000), finishedAt: 5 }), '```\n');
    reporter.start();
    await clock.settle();
    for (const c of api.calls) {
      if (c.kind !== 'create') throw new Error('expected creates');
      const out = c.run.output!;
      expect(Array.from(out.title).length).toBeLessThanOrEqual(TITLE_MAX_CHARS);
      expect(Array.from(out.summary).length).toBeLessThanOrEqual(OUTPUT_MAX_CHARS);
      expect(Array.from(out.text!).length).toBeLessThanOrEqual(OUTPUT_MAX_CHARS);
    }
    const second = api.calls[1];
    if (second?.kind !== 'create') throw new Error('expected a create');
    expect(second.run.output!.text).toContain('````\n```\n````');
  });
});

describe('GithubReporter: GitHub down or refusing', () => {
  it('an outage delays reports with exponential back-off, one warning per back-off; after it every report arrives in order', async () => {
    const { clock, store, api, reporter, warnings, lines } = setup('token');
    const builds = [store.add(build()), store.add(build()), store.add(build())];
    let down = true;
    api.fail = () => (down ? unreachable() : undefined);
    reporter.start();
    await clock.settle();
    expect(api.calls).toHaveLength(1);
    // While down: one call per back-off (1 s, 2 s, 4 s … capped at 5 min), notifications and sweeps add none.
    for (let i = 0; i < 10; i++) reporter.notify();
    await clock.advance(1_000 + 2_000 + 4_000 + 8_000 - 1);
    expect(api.calls).toHaveLength(4);
    expect(warnings()).toHaveLength(4);
    expect(clock.pendingDelays()).toContain(1);
    await clock.advance(60 * 60_000); // 16+32+64+128+256 s, then every 300 s
    const callsInAnHour = api.calls.length;
    expect(callsInAnHour).toBeGreaterThan(10);
    expect(callsInAnHour).toBeLessThan(25);
    expect(warnings()).toHaveLength(callsInAnHour);
    expect(clock.pendingDelays().at(-1)).toBeLessThanOrEqual(300_000);
    for (const b of builds) expect(store.builds.get(b.id)?.reported).toBeNull();

    down = false;
    store.update(builds[0]!.id, succeeded(builds[0]!));
    await clock.advance(300_000);
    const after = api.calls.slice(callsInAnHour).map((c) => (c.kind === 'status' ? [c.status.state, c.sha] : []));
    expect(after).toEqual([['success', SHA], ['pending', SHA], ['pending', SHA]]);
    expect(lines.filter((l) => l.msg.includes('resumed'))).toHaveLength(1);
    for (const b of builds) expect(store.builds.get(b.id)?.reported).not.toBeNull();
    // Back to the plain sweep: nothing more to say.
    await clock.advance(10 * 60_000);
    expect(api.calls.length).toBe(callsInAnHour + 3);
  });

  it('an outage never loses the order of a build: pending reaches GitHub before its end', async () => {
    const { clock, store, api, reporter } = setup('app');
    let down = true;
    api.fail = () => (down ? unreachable() : undefined);
    const b = store.add(build());
    reporter.start();
    await clock.settle();
    down = false;
    await clock.advance(1_000);
    store.update(b.id, succeeded(b));
    reporter.notify();
    await clock.settle();
    expect(api.calls.map((c) => (c.kind === 'create' ? `create ${c.run.status}` : c.kind))).toEqual(['create queued', 'create queued', 'update']);
  });

  it("honours GitHub's retryAfterMs", async () => {
    const { clock, store, api, reporter, warnings } = setup('token');
    store.add(build());
    let fails = 1;
    api.fail = () => (fails-- > 0 ? unreachable(90_000) : undefined);
    reporter.start();
    await clock.settle();
    expect(api.calls).toHaveLength(1);
    await clock.advance(89_999);
    expect(api.calls).toHaveLength(1);
    await clock.advance(1);
    expect(api.calls).toHaveLength(2);
    expect(warnings()).toHaveLength(1);
    expect(warnings()[0]).toMatchObject({ retryInMs: 90_000 });
  });

  it('a refusal (GITHUB_STATUS) is logged with the build and marked reported, not retried forever', async () => {
    const { clock, store, api, reporter, warnings, results } = setup('token');
    const a = store.add(build());
    const b = store.add(build());
    api.fail = (c) => (c.kind === 'status' && c.status.state === 'pending' && api.calls.length === 1 ? refused(403) : undefined);
    reporter.start();
    await clock.settle();
    expect(api.calls).toHaveLength(2);
    expect(warnings()).toHaveLength(1);
    expect(warnings()[0]).toMatchObject({ buildId: a.id, status: 403, stage: 'pending' });
    expect(store.builds.get(a.id)?.reported).toBe('pending');
    expect(store.builds.get(b.id)?.reported).toBe('pending');
    await clock.advance(10 * 60_000);
    expect(api.calls).toHaveLength(2);
    expect(results).toEqual(['refused', 'reported']);
  });

  it('an app whose pending report was refused still reports the end with a check run of its own', async () => {
    const { clock, store, api, reporter } = setup('app');
    const b = store.add(build());
    api.fail = (c) => (api.calls.length === 1 && c.kind === 'create' ? refused(422) : undefined);
    reporter.start();
    await clock.settle();
    store.update(b.id, succeeded(b));
    reporter.notify();
    await clock.settle();
    expect(api.calls.map((c) => (c.kind === 'create' ? c.run.status : c.kind))).toEqual(['queued', 'completed']);
    expect(store.builds.get(b.id)).toMatchObject({ reported: 'final', checkRunId: 100 }); // the refused create made none
  });

  it('counts each result on expo_worker_github_reports_total', async () => {
    const metrics = new ControllerMetrics({ heartbeatTimeoutMs: 60_000 });
    const { clock, store, api, reporter } = setup('token', { onReport: (r) => metrics.onGithubReport(r) });
    store.add(build());
    store.add(build());
    api.fail = () => [refused(404), unreachable()][api.calls.length - 1];
    reporter.start();
    await clock.advance(1_000);
    const text = await metrics.registry.metrics();
    for (const [result, n] of [['reported', 1], ['refused', 1], ['unreachable', 1], ['failed', 0]] as const) {
      expect(text).toContain(`expo_worker_github_reports_total{result="${result}"} ${n}`);
    }
  });

  it('a store error is logged and backed off, and notify() still never throws', async () => {
    const { clock, store, api, reporter, lines } = setup('token');
    store.add(build());
    store.failList = new Error('disk I/O error');
    reporter.start();
    expect(() => reporter.notify()).not.toThrow();
    await clock.settle();
    expect(lines.filter((l) => l.level === 50)).toHaveLength(1);
    expect(store.calls.filter((c) => c === 'list')).toHaveLength(1);
    store.failList = null;
    await clock.advance(1_000);
    expect(api.calls).toHaveLength(1);
  });
});

describe('GithubReporter: passes, restarts and stopping', () => {
  it('a notify() during a pass triggers exactly one more pass', async () => {
    const { clock, store, reporter } = setup('token');
    store.add(build());
    let open!: () => void;
    store.gate = new Promise<void>((r) => (open = r));
    reporter.start();
    await clock.settle();
    expect(store.calls.filter((c) => c === 'list')).toHaveLength(1);
    reporter.notify();
    reporter.notify();
    reporter.notify();
    store.gate = null;
    open();
    await clock.settle();
    expect(store.calls.filter((c) => c === 'list')).toHaveLength(2);
    reporter.notify();
    await clock.settle();
    expect(store.calls.filter((c) => c === 'list')).toHaveLength(3);
  });

  it('reads in batches until nothing is left, and sweeps every sweepMs', async () => {
    const { clock, store, api, reporter } = setup('token', { batch: 2, sweepMs: 10_000 });
    for (let i = 0; i < 5; i++) store.add(build());
    reporter.start();
    await clock.settle();
    expect(api.calls).toHaveLength(5);
    expect(store.calls.filter((c) => c === 'list')).toHaveLength(3);
    store.add(build()); // nobody notifies: the sweep finds it
    await clock.advance(10_000);
    expect(api.calls).toHaveLength(6);
  });

  it('a new reporter over the same store reports what the last one left', async () => {
    const clock = new FakeClock();
    const store = new FakeReportStore();
    const first = setup('token', {}, { store, clock });
    const a = store.add(build());
    const b = store.add(build());
    first.api.fail = () => (first.api.calls.length > 1 ? unreachable() : undefined);
    first.reporter.start();
    await clock.settle();
    store.update(a.id, succeeded(a));
    await first.reporter.stop();
    expect(clock.pending).toBe(0);
    expect(store.builds.get(a.id)?.reported).toBe('pending');
    expect(store.builds.get(b.id)?.reported).toBeNull();

    const second = setup('token', {}, { store, clock });
    second.reporter.start();
    await clock.settle();
    expect(second.api.statuses().map((s) => s.state)).toEqual(['success', 'pending']);
    expect([store.builds.get(a.id)?.reported, store.builds.get(b.id)?.reported]).toEqual(['final', 'pending']);
  });

  it('stop() waits for the pass in flight, but not past stopTimeoutMs', async () => {
    const { clock, store, api, reporter } = setup('token', { stopTimeoutMs: 5_000 });
    store.add(build());
    api.hang = new Promise<void>(() => undefined);
    reporter.start();
    await clock.settle();
    expect(api.calls).toHaveLength(1);
    await clock.run(reporter.stop(), 5_000);
    expect(clock.pending).toBe(0);
    reporter.notify();
    await clock.settle();
    expect(api.calls).toHaveLength(1);
  });

  it('mode none reports nothing, marks nothing, sets no timer, and says so once', async () => {
    const { clock, store, api, reporter, lines } = setup('none');
    const b = store.add(build({ status: 'succeeded', finishedAt: 5 }));
    reporter.start();
    reporter.notify();
    await clock.advance(10 * 60_000);
    expect(api.calls).toEqual([]);
    expect(store.calls).toEqual([]);
    expect(store.builds.get(b.id)?.reported).toBeNull();
    expect(clock.pending).toBe(0);
    expect(lines.map((l) => l.msg)).toEqual([expect.stringContaining('GitHub reports are off')]);
  });

  it('refuses options that are not positive integers, naming them', () => {
    expect(() => setup('token', { sweepMs: 0 })).toThrow(/sweepMs/);
    expect(() => setup('token', { batch: 1.5 })).toThrow(/batch/);
  });
});
