/**
 * One attempt of a build, driven end to end with a fake clock and fakes that refuse what they do
 * not expect (no real time, no processes, no sshd): what the controller is told, what the VM and
 * its workspace are asked, what the build log says — on success and on every way an attempt can
 * end early, in each phase it can end in.
 */
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { BuildRunner } from '../../../src/agent/build-runner.ts';
import type { BuildVm, RunnerSettings, WorkspaceSpec } from '../../../src/agent/runner-ports.ts';
import { ExpoError } from '../../../src/protocol/errors.ts';
import type { AssignedBuild, PollResponse } from '../../../src/protocol/schemas.ts';
import { FakeClock } from '../../support/fake-clock.ts';
import {
  captureLogger,
  deferred,
  FakeBuildVm,
  FakeRunnerClient,
  FakeRunnerLog,
  FakeWorkspace,
  pendingUntilAborted,
} from '../../support/fake-runner-ports.ts';

const LEASE = 'ewl_lease-b1-1';
const SETTINGS: RunnerSettings = {
  workerId: 'w1',
  prepareTimeoutMs: 60_000,
  logDir: '/var/log/expo-worker',
  stepStopGraceMs: 10_000,
  preparingKeepaliveMs: 5_000,
  reportDeadlineMs: 3_600_000,
};

const attemptOver = (code: 'LEASE_STALE' | 'BUILD_OVER' = 'LEASE_STALE') =>
  new ExpoError('HTTP_STATUS', `POST /api/v1/builds/b1/x: 409 ${code} the attempt is over`, { details: { method: 'POST', path: '/api/v1/builds/b1/x', status: 409, code } });
const unreachable = () => new ExpoError('HTTP_UNREACHABLE', 'controller unreachable (POST /x): connect ECONNREFUSED', { details: { method: 'POST', path: '/x' } });

/** The fake clocks of this test's attempts: each must be empty when the test ends. */
let clocks: FakeClock[] = [];
afterEach(() => {
  const left = clocks.map((c) => c.pendingDelays());
  clocks = [];
  // Every path, not only success, cancels its limits, keepalives and backoffs: no timer outlives the attempt.
  expect(left).toEqual(left.map(() => []));
});

function setup(o: { build?: Partial<AssignedBuild>; settings?: Partial<RunnerSettings> } = {}) {
  const build: AssignedBuild = {
    id: 'b1',
    steps: [
      { name: 'build', run: 'make' },
      { name: 'test', run: 'make test' },
    ],
    env: { A: '1' },
    secretEnv: { TOKEN: 's3cret' },
    labels: [],
    timeoutS: 600,
    attempt: 1,
    maxAttempts: 2,
    logOffset: 0,
    artifacts: [],
    ...o.build,
  };
  const claim: PollResponse = { build, lease: LEASE, buildToken: 'ewb_token-b1' };
  const clock = new FakeClock();
  clocks.push(clock);
  const client = new FakeRunnerClient();
  const ws = new FakeWorkspace();
  const vm = new FakeBuildVm();
  const stream = new FakeRunnerLog();
  const { log, lines } = captureLogger();
  const h = {
    clock,
    client,
    ws,
    vm,
    stream,
    lines,
    monitorStartFailures: 0,
    checkouts: [] as { seconds: number; ok: boolean }[],
    acquireRequests: [] as { buildId: string; attempt: number; signal: AbortSignal }[],
    /** Answers the VM acquisition; default: the healthy fake VM. */
    acquire: async (_req: { signal: AbortSignal; onProgress: (l: string) => void; onSshReady?: (vm: BuildVm) => void }): Promise<BuildVm> => vm,
    spec: undefined as WorkspaceSpec | undefined,
    runner: undefined as unknown as BuildRunner,
  };
  h.runner = new BuildRunner(claim, {
    clock,
    client,
    acquireVm: (req) => {
      h.acquireRequests.push(req);
      return h.acquire(req);
    },
    openWorkspace: (v, spec) => {
      if (v !== vm) throw new Error('unexpected VM');
      h.spec = spec;
      return ws;
    },
    openLog: (options) => {
      if (stream.options) throw new Error('unexpected second log stream');
      stream.options = options;
      return stream;
    },
    settings: { ...SETTINGS, ...o.settings },
    log,
    metrics: { monitorStartFailed: () => void h.monitorStartFailures++, checkoutFinished: (seconds, ok) => void h.checkouts.push({ seconds, ok }) },
    random: () => 0.5,
  });
  return h;
}

type Harness = ReturnType<typeof setup>;

/** Starts the attempt and lets it run up to its first wait. */
async function start(h: Harness) {
  const done = h.runner.run();
  done.catch(() => undefined);
  await h.clock.settle();
  return { finish: () => h.clock.run(done), done };
}

const failed = (failureReason: string, message: string | RegExp) => ({ lease: LEASE, status: 'failed', failureReason, message: typeof message === 'string' ? message : expect.stringMatching(message) });

describe('BuildRunner: success', () => {
  it('prepares, starts the monitor, runs each step, reports success, stops the monitor and deletes the VM with its log', async () => {
    const h = setup();
    h.ws.healthy();
    h.ws.onRunStep = async (i, io) => {
      io.onOutput(Buffer.from(`output of step ${i}\n`));
      return 0;
    };
    const outcome = await h.clock.run(h.runner.run());
    expect(outcome).toEqual({ kind: 'reported', body: { status: 'succeeded', exitCode: 0 }, answer: 'succeeded' });
    expect(h.client.calls).toEqual(['phase preparing', 'phase running', 'complete succeeded']);
    expect(h.client.completions).toEqual([{ lease: LEASE, status: 'succeeded', exitCode: 0 }]);
    expect(h.ws.calls).toEqual(['startMonitor', 'runStep 0 0', 'runStep 1 50', 'writeProgress 100', 'stopMonitor']);
    expect(h.vm.releases).toEqual([{ removeLog: true }]);
    expect(h.runner.state).toBe('done');
    expect(h.stream.notes()).toEqual([
      'attempt 1 of 2 on worker w1: preparing a fresh VM',
      'VM expo-worker-w1-b1-1 is healthy at 192.168.64.7',
      'step 1/2: build',
      'step 2/2: test',
      'build succeeded',
    ]);
    expect(h.stream.text).toContain('output of step 0\n');
    expect(h.stream.text).toContain('output of step 1\n');
    // Every limit and keepalive was cancelled: nothing of the attempt is left on the clock.
    expect(h.clock.pending).toBe(0);
  });

  it('opens the workspace with the env and secrets, and the log where the attempt starts', async () => {
    const h = setup({ build: { logOffset: 321 } });
    h.ws.healthy();
    await h.clock.run(h.runner.run());
    expect(h.spec).toEqual({ id: 'b1', attempt: 1, env: { A: '1', TOKEN: 's3cret' }, steps: [{ name: 'build', run: 'make' }, { name: 'test', run: 'make test' }], buildToken: 'ewb_token-b1' });
    expect(h.stream.options).toMatchObject({ path: '/var/log/expo-worker/b1-1.log', startOffset: 321, secretValues: ['s3cret'] });
    expect(h.stream.closes).toEqual([h.clock.now() + SETTINGS.reportDeadlineMs]);
  });

  it('forwards progress markers from the output to the progress file', async () => {
    const h = setup({ build: { steps: [{ name: 'one', run: 'x' }] } });
    h.ws.healthy();
    h.ws.onRunStep = async (_i, io) => {
      io.onOutput(Buffer.from('::progress 4'));
      io.onOutput(Buffer.from('0\nhello\n'));
      return 0;
    };
    await h.clock.run(h.runner.run());
    expect(h.ws.calls).toEqual(['startMonitor', 'runStep 0 0', 'writeProgress 40', 'writeProgress 100', 'stopMonitor']);
  });

  it('keeps a preparing build alive with phase updates (not retried) until the monitor runs', async () => {
    const h = setup();
    h.ws.healthy();
    const vmReady = deferred<BuildVm>();
    h.acquire = () => vmReady.promise;
    const { finish } = await start(h);
    await h.clock.advance(12_000);
    expect(h.client.calls).toEqual(['phase preparing', 'phase preparing', 'phase preparing']);
    expect(h.client.phaseOptions[1]).toEqual({ retries: 0 });
    vmReady.resolve(h.vm);
    await finish();
    expect(h.client.calls).toEqual(['phase preparing', 'phase preparing', 'phase preparing', 'phase running', 'complete succeeded']);
  });

  it('a step that runs longer than the prepare timeout is not cut short by it', async () => {
    const h = setup({ build: { steps: [{ name: 'slow', run: 'x' }] } });
    h.ws.healthy();
    h.ws.onRunStep = () => h.clock.sleep(5 * 60_000).then(() => 0);
    expect(await h.clock.run(h.runner.run())).toMatchObject({ kind: 'reported', body: { status: 'succeeded' } });
  });

  it("a step's non-zero exit fails the build as build_failed with its code, after collecting its artifacts", async () => {
    const h = setup({ build: { artifacts: ['out/report.xml'] } });
    h.ws.healthy();
    h.ws.onRunStep = async () => 300;
    h.ws.onFindArtifacts = async () => new Map([['out/report.xml', ['out/report.xml']]]);
    h.ws.onOpenArtifact = async () => ({ stream: Readable.from([Buffer.from('<xml/>')]), sizeBytes: 6 });
    h.client.onUpload = async () => ({ sizeBytes: 6, sha256: 'abc' });
    await h.clock.run(h.runner.run());
    expect(h.client.completions).toEqual([{ lease: LEASE, status: 'failed', failureReason: 'build_failed', exitCode: 255, message: "step 'build' exited with 300" }]);
    expect(h.ws.calls).toEqual(['startMonitor', 'runStep 0 0', 'findArtifacts out/report.xml', 'openArtifact out/report.xml', 'stopMonitor']);
    expect(h.stream.notes()).toContain('artifact out/report.xml: 6 bytes, sha256 abc');
    expect(h.vm.releases).toEqual([{ removeLog: false }]);
  });
});

describe('BuildRunner: cancel', () => {
  it('while preparing: the VM acquisition is aborted, the build reported cancelled, no workspace touched', async () => {
    const h = setup();
    h.acquire = (req) => pendingUntilAborted(req.signal);
    const { finish } = await start(h);
    expect(h.runner.cancel()).toBe(true);
    expect(await finish()).toMatchObject({ kind: 'reported', body: { status: 'cancelled' } });
    expect(h.acquireRequests[0]!.signal.aborted).toBe(true);
    expect(h.client.calls).toEqual(['phase preparing', 'complete cancelled']);
    expect(h.client.completions).toEqual([{ lease: LEASE, status: 'cancelled', message: 'cancel requested' }]);
    expect(h.ws.calls).toEqual([]);
    expect(h.vm.releases).toEqual([]);
    expect(h.stream.notes().at(-1)).toBe('build cancelled: cancel requested');
    expect(h.lines).toContainEqual(expect.objectContaining({ msg: 'aborting build', reason: 'cancelled' }));
  });

  it('while a step runs: the step is stopped (TERM, grace, KILL), the monitor stopped, the VM deleted', async () => {
    const h = setup();
    h.ws.healthy();
    h.ws.onRunStep = (_i, io) => pendingUntilAborted(io.signal);
    h.ws.onStopStep = async () => undefined;
    const { finish } = await start(h);
    expect(h.runner.state).toBe('running');
    h.runner.cancel();
    await finish();
    expect(h.client.completions).toEqual([{ lease: LEASE, status: 'cancelled', message: 'cancel requested' }]);
    expect(h.ws.calls).toEqual(['startMonitor', 'runStep 0 0', 'stopStep 10000', 'stopMonitor']);
    expect(h.stream.notes()).toContain('stopping step 1: cancelled');
    expect(h.vm.releases).toEqual([{ removeLog: false }]);
  });

  it('while an artifact uploads: the upload in flight ends, nothing more is uploaded, the build is cancelled', async () => {
    const h = setup({ build: { steps: [{ name: 'one', run: 'x' }], artifacts: ['a.txt', 'b.txt'] } });
    h.ws.healthy();
    h.ws.onFindArtifacts = async () => new Map([['a.txt', ['a.txt']], ['b.txt', ['b.txt']]]);
    h.ws.onOpenArtifact = async () => ({ stream: Readable.from([]), sizeBytes: 0 });
    const upload = deferred<{ sizeBytes: number; sha256: string }>();
    h.client.onUpload = () => upload.promise;
    const { finish } = await start(h);
    expect(h.client.calls.at(-1)).toBe('upload a.txt');
    h.runner.cancel();
    upload.resolve({ sizeBytes: 0, sha256: 'e3b0' });
    await finish();
    expect(h.client.calls).toEqual(['phase preparing', 'phase running', 'upload a.txt', 'complete cancelled']);
    expect(h.client.completions.at(-1)).toEqual({ lease: LEASE, status: 'cancelled', message: 'cancel requested' });
    expect(h.stream.notes().filter((n) => n.startsWith('artifact'))).toEqual([]);
  });

  it('while an artifact upload waits to be retried: the wait ends at once, no retry', async () => {
    const h = setup({ build: { steps: [{ name: 'one', run: 'x' }], artifacts: ['a.txt'] } });
    h.ws.healthy();
    h.ws.onFindArtifacts = async () => new Map([['a.txt', ['a.txt']]]);
    h.ws.onOpenArtifact = async () => ({ stream: Readable.from([]), sizeBytes: 0 });
    h.client.onUpload = async () => {
      throw unreachable();
    };
    const { finish } = await start(h);
    expect(h.clock.pendingDelays()).toEqual([1500, 600_000]); // the backoff, the build's timeout
    h.runner.cancel();
    await finish();
    expect(h.client.calls).toEqual(['phase preparing', 'phase running', 'upload a.txt', 'complete cancelled']);
  });
  it.each([
    // Aborted while preparing: the running phase is never asked for, no step runs.
    ['starts', (m: ReturnType<typeof deferred<number>>) => m.resolve(4321), ['phase preparing', 'complete cancelled']],
    ['fails to start', (m: ReturnType<typeof deferred<number>>) => m.reject(new Error('SSH_CLOSED')), ['phase preparing', 'complete cancelled']],
  ] as const)('while the monitor starts (and then %s): the start is waited for, the build reported cancelled, the monitor stopped, the VM deleted', async (_what, settleMonitor, calls) => {
    const h = setup();
    h.ws.healthy();
    const monitor = deferred<number>();
    h.ws.onStartMonitor = () => monitor.promise;
    // As the real client (p-retry): a call whose signal is already aborted is refused before it is sent.
    h.client.onPhase = async (_p, r) => r?.signal?.throwIfAborted();
    const { finish } = await start(h);
    expect(h.runner.state).toBe('starting-monitor');
    expect(h.runner.cancel()).toBe(true);
    await h.clock.settle();
    expect(h.client.calls).toEqual(['phase preparing']);
    settleMonitor(monitor);
    expect(await finish()).toEqual({ kind: 'reported', body: { status: 'cancelled', message: 'cancel requested' }, answer: 'cancelled' });
    expect(h.client.completions).toEqual([{ lease: LEASE, status: 'cancelled', message: 'cancel requested' }]);
    expect(h.client.calls).toEqual(calls);
    expect(h.client.phaseOptions.slice(1).every((r) => r?.signal?.aborted === true)).toBe(true);
    expect(h.ws.calls).toEqual(['startMonitor', 'stopMonitor']);
    expect(h.monitorStartFailures).toBe(0);
    expect(h.vm.releases).toEqual([{ removeLog: false }]);
    expect(h.stream.notes().at(-1)).toBe('build cancelled: cancel requested');
  });
});


describe('BuildRunner: the controller says the attempt is over (409)', () => {
  it.each(['LEASE_STALE', 'BUILD_OVER'] as const)('at the first phase update (%s): nothing prepared, nothing reported', async (code) => {
    const h = setup();
    h.client.onPhase = async () => {
      throw attemptOver(code);
    };
    const outcome = await h.clock.run(h.runner.run());
    expect(outcome).toEqual({ kind: 'abandoned', why: expect.stringContaining(code) });
    expect(h.client.calls).toEqual(['phase preparing']);
    expect(h.acquireRequests).toEqual([]);
    expect(h.stream.closes).toEqual([h.clock.now() + 5000]);
  });

  it('at a keepalive while the VM boots: the acquisition is aborted, nothing reported', async () => {
    const h = setup();
    h.acquire = (req) => pendingUntilAborted(req.signal);
    h.client.onPhase = async (_phase, r) => {
      if (r?.retries === 0) throw attemptOver();
    };
    const outcome = await h.clock.run(h.runner.run());
    expect(outcome.kind).toBe('abandoned');
    expect(h.client.calls).toEqual(['phase preparing', 'phase preparing']);
    expect(h.acquireRequests[0]!.signal.aborted).toBe(true);
  });

  it('at the running phase: the VM is deleted without talking to the monitor', async () => {
    const h = setup();
    h.ws.healthy();
    h.client.onPhase = async (phase) => {
      if (phase === 'running') throw attemptOver();
    };
    expect((await h.clock.run(h.runner.run())).kind).toBe('abandoned');
    expect(h.ws.calls).toEqual(['startMonitor']);
    expect(h.vm.releases).toEqual([{ removeLog: false }]);
    expect(h.client.calls).toEqual(['phase preparing', 'phase running']);
  });

  it.each(['LEASE_STALE', 'BUILD_OVER'] as const)('at a keepalive while the monitor starts (%s): nothing reported, the monitor not talked to again, the VM deleted', async (code) => {
    const h = setup();
    h.ws.healthy();
    const monitor = deferred<number>();
    h.ws.onStartMonitor = () => monitor.promise;
    h.client.onPhase = async (_p, r) => {
      r?.signal?.throwIfAborted(); // as the real client: an aborted call is not sent
      if (r?.retries === 0) throw attemptOver(code);
    };
    const { finish } = await start(h);
    expect(h.runner.state).toBe('starting-monitor');
    await h.clock.advance(SETTINGS.preparingKeepaliveMs);
    expect(h.client.calls).toEqual(['phase preparing', 'phase preparing']);
    expect(h.lines).toContainEqual(expect.objectContaining({ msg: 'aborting build', reason: 'attempt_over' }));
    monitor.resolve(4321);
    expect(await finish()).toEqual({ kind: 'abandoned', why: expect.stringContaining(code) });
    expect(h.client.completions).toEqual([]);
    expect(h.client.calls.filter((c) => c.startsWith('complete'))).toEqual([]);
    expect(h.ws.calls).toEqual(['startMonitor']);
    expect(h.vm.releases).toEqual([{ removeLog: false }]);
    expect(h.stream.closes).toEqual([h.clock.now() + 5000]);
  });

  it('from the log stream while a step runs: the step is not stopped (its VM goes), nothing reported', async () => {
    const h = setup();
    h.ws.healthy();
    h.ws.onRunStep = (_i, io) => pendingUntilAborted(io.signal);
    const { finish } = await start(h);
    h.stream.options!.onAttemptOver!(attemptOver('BUILD_OVER'));
    expect(await finish()).toEqual({ kind: 'abandoned', why: expect.stringContaining('BUILD_OVER') });
    expect(h.ws.calls).toEqual(['startMonitor', 'runStep 0 0']);
    expect(h.client.calls).toEqual(['phase preparing', 'phase running']);
    expect(h.vm.releases).toEqual([{ removeLog: false }]);
  });

  it('at an artifact upload: no more uploads, nothing reported', async () => {
    const h = setup({ build: { steps: [{ name: 'one', run: 'x' }], artifacts: ['a.txt', 'b.txt'] } });
    h.ws.healthy();
    h.ws.onFindArtifacts = async () => new Map([['a.txt', ['a.txt']], ['b.txt', ['b.txt']]]);
    h.ws.onOpenArtifact = async () => ({ stream: Readable.from([]), sizeBytes: 0 });
    h.client.onUpload = async () => {
      throw attemptOver();
    };
    expect((await h.clock.run(h.runner.run())).kind).toBe('abandoned');
    expect(h.client.calls).toEqual(['phase preparing', 'phase running', 'upload a.txt']);
    expect(h.ws.calls).not.toContain('stopMonitor');
  });

  it('at the completion: abandoned; the monitor is stopped and the VM deleted', async () => {
    const h = setup();
    h.ws.healthy();
    h.client.onComplete = async () => {
      throw attemptOver();
    };
    expect(await h.clock.run(h.runner.run())).toEqual({ kind: 'abandoned', why: 'the controller refused the completion: the attempt was already over' });
    expect(h.ws.calls.at(-1)).toBe('stopMonitor');
    expect(h.vm.releases).toEqual([{ removeLog: true }]);
    expect(h.lines).toContainEqual(expect.objectContaining({ msg: 'completion refused: the attempt was already over' }));
  });
});

describe('BuildRunner: the VM exits or crashes', () => {
  it.each([
    ['VM_EXITED', 'vm_crashed'],
    ['VM_UNHEALTHY', 'vm_unhealthy'],
  ] as const)('while preparing (%s): reported as %s with the reason', async (code, reason) => {
    const h = setup();
    h.acquire = async () => {
      throw new ExpoError(code, 'disk check: 3 GB free, 20 GB needed');
    };
    await h.clock.run(h.runner.run());
    expect(h.client.completions).toEqual([failed(reason, 'disk check: 3 GB free, 20 GB needed')]);
    expect(h.ws.calls).toEqual([]);
  });

  it('while the monitor starts: vm_crashed from tart run exiting, not a monitor failure', async () => {
    const h = setup();
    h.ws.healthy();
    const monitor = deferred<number>();
    h.ws.onStartMonitor = () => monitor.promise;
    const { finish } = await start(h);
    expect(h.runner.state).toBe('starting-monitor');
    h.vm.crash(1);
    await h.clock.settle();
    monitor.reject(new Error('SSH_CLOSED'));
    await finish();
    expect(h.client.completions).toEqual([failed('vm_crashed', 'tart run exited (1): guest has stopped the virtual machine')]);
    expect(h.monitorStartFailures).toBe(0);
    expect(h.ws.calls).toEqual(['startMonitor']);
    expect(h.vm.releases).toEqual([{ removeLog: false }]);
  });

  it('while a step runs: the step is abandoned (not stopped), vm_crashed reported at once', async () => {
    const h = setup();
    h.ws.healthy();
    h.ws.onRunStep = (_i, io) => pendingUntilAborted(io.signal);
    const { finish } = await start(h);
    h.vm.crash(137, 'killed\n');
    await finish();
    expect(h.client.completions).toEqual([failed('vm_crashed', 'tart run exited (137): killed')]);
    expect(h.ws.calls).toEqual(['startMonitor', 'runStep 0 0']);
  });

  it('the SSH connection lost while a step runs: vm_crashed', async () => {
    const h = setup();
    h.ws.healthy();
    h.ws.onRunStep = (_i, io) => pendingUntilAborted(io.signal);
    const { finish } = await start(h);
    h.vm.session.closeWith({ error: new Error('keepalive timeout') });
    await finish();
    expect(h.client.completions).toEqual([failed('vm_crashed', 'SSH connection lost: keepalive timeout')]);
  });

  it('a clean SSH close is no crash', async () => {
    const h = setup();
    h.ws.healthy();
    const step = deferred<number | null>();
    h.ws.onRunStep = () => step.promise;
    const { finish } = await start(h);
    h.vm.session.closeWith({});
    await h.clock.settle();
    step.resolve(0);
    expect((await finish()).kind).toBe('reported');
    expect(h.client.completions[0]!.status).toBe('succeeded');
  });

  it('a step that ends without an exit status and a VM that no longer answers: vm_crashed after a 2 s grace', async () => {
    const h = setup();
    h.ws.healthy();
    h.ws.onRunStep = async () => null;
    h.ws.onAlive = async () => false;
    const { finish } = await start(h);
    expect(h.clock.pendingDelays()).toContain(2000);
    await finish();
    expect(h.client.completions).toEqual([failed('vm_crashed', "the VM stopped answering during step 'build'")]);
    expect(h.ws.calls).toEqual(['startMonitor', 'runStep 0 0', 'alive 5000']);
  });

  it('a step that ends without an exit status in a VM that still answers: build_failed', async () => {
    const h = setup();
    h.ws.healthy();
    h.ws.onRunStep = async () => null;
    h.ws.onAlive = async () => true;
    await h.clock.run(h.runner.run());
    expect(h.client.completions).toEqual([failed('build_failed', "step 'build' ended without an exit status")]);
    expect(h.ws.calls.at(-1)).toBe('stopMonitor');
  });

  it('the SSH call of a step failing, in a dead VM: vm_crashed', async () => {
    const h = setup();
    h.ws.healthy();
    h.ws.onRunStep = async () => {
      throw new Error('SSH_CLOSED: channel closed');
    };
    h.ws.onAlive = async () => false;
    await h.clock.run(h.runner.run());
    expect(h.client.completions).toEqual([failed('vm_crashed', "the SSH session failed during step 'build': SSH_CLOSED: channel closed")]);
  });

  it('while artifacts upload: vm_crashed', async () => {
    const h = setup({ build: { steps: [{ name: 'one', run: 'x' }], artifacts: ['a.txt'] } });
    h.ws.healthy();
    h.ws.onFindArtifacts = async () => new Map([['a.txt', ['a.txt']]]);
    h.ws.onOpenArtifact = async () => ({ stream: Readable.from([]), sizeBytes: 0 });
    const upload = deferred<{ sizeBytes: number; sha256: string }>();
    h.client.onUpload = () => upload.promise;
    const { finish } = await start(h);
    h.vm.crash(1);
    await h.clock.settle();
    upload.reject(new Error('socket hang up'));
    await finish();
    expect(h.client.completions).toEqual([failed('vm_crashed', /^tart run exited \(1\)/)]);
    expect(h.ws.calls).not.toContain('stopMonitor');
  });

  it('after the attempt is decided: changes nothing', async () => {
    const h = setup();
    h.ws.healthy();
    await h.clock.run(h.runner.run());
    h.vm.crash(1);
    await h.clock.settle();
    expect(h.runner.abort('vm_crashed', 'late')).toBe(false);
    expect(h.runner.cancel()).toBe(false);
    expect(h.client.completions).toHaveLength(1);
    expect(h.lines.filter((l) => l.msg === 'aborting build')).toEqual([]);
  });

  it('a VM that cannot be deleted is logged for the reaper; the outcome stands', async () => {
    const h = setup();
    h.ws.healthy();
    h.vm.onRelease = async () => {
      throw new Error('tart delete: busy');
    };
    expect((await h.clock.run(h.runner.run())).kind).toBe('reported');
    expect(h.lines).toContainEqual(expect.objectContaining({ msg: 'could not delete the VM; the reaper will retry', err: 'tart delete: busy' }));
  });
});

describe('BuildRunner: the monitor cannot start', () => {
  it('fails the attempt as vm_unhealthy and counts it', async () => {
    const h = setup();
    h.ws.healthy();
    h.ws.onStartMonitor = async () => {
      throw new Error('the monitor did not start');
    };
    await h.clock.run(h.runner.run());
    expect(h.client.completions).toEqual([failed('vm_unhealthy', 'vm-monitor.sh could not be started: the monitor did not start')]);
    expect(h.monitorStartFailures).toBe(1);
    expect(h.client.calls).toEqual(['phase preparing', 'complete failed']);
  });
});

describe('BuildRunner: the controller is unreachable', () => {
  it('for the first phase update (after the client’s retries): worker_lost, so the build may be retried', async () => {
    const h = setup();
    let phases = 0;
    h.client.onPhase = async () => {
      if (phases++ === 0) throw unreachable();
    };
    await h.clock.run(h.runner.run());
    expect(h.client.completions).toEqual([failed('worker_lost', 'agent error: controller unreachable (POST /x): connect ECONNREFUSED')]);
    expect(h.acquireRequests).toEqual([]);
    expect(h.lines).toContainEqual(expect.objectContaining({ msg: 'build attempt failed in the agent' }));
  });

  it('for the running phase update (after the client’s retries): worker_lost, no step run, the monitor stopped, the VM deleted', async () => {
    const h = setup();
    h.ws.healthy();
    h.client.onPhase = async (phase) => {
      if (phase === 'running') throw unreachable();
    };
    const outcome = await h.clock.run(h.runner.run());
    expect(outcome).toEqual({
      kind: 'reported',
      body: { status: 'failed', failureReason: 'worker_lost', message: 'agent error: controller unreachable (POST /x): connect ECONNREFUSED' },
      answer: 'failed',
    });
    expect(h.client.calls).toEqual(['phase preparing', 'phase running', 'complete failed']);
    // The runner does not retry it itself: the update goes out with the client's own retries (its default), bound to the attempt.
    expect(h.client.phaseOptions[1]).toEqual({ signal: expect.any(AbortSignal) });
    expect(h.ws.calls).toEqual(['startMonitor', 'stopMonitor']);
    expect(h.vm.releases).toEqual([{ removeLog: false }]);
    expect(h.lines).toContainEqual(expect.objectContaining({ msg: 'build attempt failed in the agent' }));
    expect(h.runner.state).toBe('done');
  });

  it('keepalives that fail while preparing are ignored', async () => {
    const h = setup();
    h.ws.healthy();
    const vmReady = deferred<BuildVm>();
    h.acquire = () => vmReady.promise;
    h.client.onPhase = async (_p, r) => {
      if (r?.retries === 0) throw unreachable();
    };
    const { finish } = await start(h);
    await h.clock.advance(20_000);
    vmReady.resolve(h.vm);
    expect((await finish()).kind).toBe('reported');
    expect(h.client.completions[0]!.status).toBe('succeeded');
  });

  it('for the completion: retried without end until the report deadline, then given up (the VM is still deleted)', async () => {
    const h = setup({ settings: { reportDeadlineMs: 600_000 } });
    h.ws.healthy();
    let options: { retries?: number } | undefined;
    h.client.onComplete = (_b, r) => {
      options = r;
      r?.onRetry?.(unreachable(), 1, 500);
      return pendingUntilAborted(r?.signal);
    };
    const t0 = h.clock.now();
    const { finish } = await start(h);
    await expect(finish()).rejects.toThrow(/timeout/);
    expect(h.clock.now() - t0).toBe(600_000);
    expect(options?.retries).toBe(Number.POSITIVE_INFINITY);
    expect(h.lines).toContainEqual(expect.objectContaining({ msg: 'completion not delivered yet; retrying' }));
    expect(h.lines).toContainEqual(expect.objectContaining({ msg: 'completion could not be delivered' }));
    expect(h.ws.calls.at(-1)).toBe('stopMonitor');
    expect(h.vm.releases).toEqual([{ removeLog: true }]);
    expect(h.runner.state).toBe('done');
  });
});

describe('BuildRunner: artifacts', () => {
  const withArtifacts = (artifacts: AssignedBuild['artifacts']) => {
    const h = setup({ build: { steps: [{ name: 'one', run: 'x' }], artifacts } });
    h.ws.healthy();
    h.ws.onOpenArtifact = async () => ({ stream: Readable.from([Buffer.from('abc')]), sizeBytes: 3 });
    return h;
  };

  it('an optional pattern that matches nothing: succeeded, the problem noted and reported', async () => {
    const h = withArtifacts(['out/*.ipa', 'logs/*.txt']);
    h.ws.onFindArtifacts = async () => new Map([['out/*.ipa', ['out/App.ipa']], ['logs/*.txt', []]]);
    h.client.onUpload = async () => ({ sizeBytes: 3, sha256: 'ba78' });
    await h.clock.run(h.runner.run());
    const problem = { pattern: 'logs/*.txt', reason: 'no_match', required: false, message: 'no file matches this pattern in the work directory' };
    expect(h.client.completions).toEqual([{ lease: LEASE, status: 'succeeded', exitCode: 0, artifactProblems: [problem] }]);
    expect(h.stream.notes()).toContain('artifact logs/*.txt was not stored: no_match: no file matches this pattern in the work directory');
    expect(h.client.calls).toContain('upload out/App.ipa');
  });

  it('a required pattern that matches nothing: artifact_missing', async () => {
    const h = withArtifacts([{ path: 'out/*.ipa', required: true }]);
    h.ws.onFindArtifacts = async () => new Map([['out/*.ipa', []]]);
    await h.clock.run(h.runner.run());
    expect(h.client.completions).toEqual([
      {
        ...failed('artifact_missing', 'required artifact not stored: out/*.ipa (no_match)'),
        artifactProblems: [{ pattern: 'out/*.ipa', reason: 'no_match', required: true, message: 'no file matches this pattern in the work directory' }],
      },
    ]);
    expect(h.ws.calls).not.toContain('writeProgress 100');
  });

  it('an upload failing while the controller is away is retried with a fresh stream, on the clock’s backoff', async () => {
    const h = withArtifacts(['a.txt']);
    h.ws.onFindArtifacts = async () => new Map([['a.txt', ['a.txt']]]);
    let uploads = 0;
    h.client.onUpload = async () => {
      if (++uploads <= 2) throw unreachable();
      return { sizeBytes: 3, sha256: 'ba78' };
    };
    const { finish } = await start(h);
    expect(h.clock.pendingDelays()[0]).toBe(1500); // 1 s × (1 + jitter 0.5)
    await h.clock.advance(1500);
    expect(h.clock.pendingDelays()[0]).toBe(3000);
    await finish();
    expect(h.ws.calls.filter((c) => c.startsWith('openArtifact'))).toHaveLength(3);
    expect(h.stream.notes()).toEqual(expect.arrayContaining(['artifact a.txt: upload 1 failed (controller unreachable (POST /x): connect ECONNREFUSED); retrying', 'artifact a.txt: 3 bytes, sha256 ba78']));
    expect(h.client.completions[0]).toEqual({ lease: LEASE, status: 'succeeded', exitCode: 0 });
  });

  it('an upload that keeps failing: 5 retries (backoff capped at 10 s), then an upload_failed problem', async () => {
    const h = withArtifacts([{ path: 'a.txt', required: true }]);
    h.ws.onFindArtifacts = async () => new Map([['a.txt', ['a.txt']]]);
    h.client.onUpload = async () => {
      throw unreachable();
    };
    const delays: number[] = [];
    const { finish, done } = await start(h);
    let settled = false;
    void done.finally(() => (settled = true));
    while (!settled && h.clock.pendingDelays().length > 0) {
      const [next] = h.clock.pendingDelays();
      delays.push(next!);
      await h.clock.advance(next!);
    }
    await finish();
    expect(delays).toEqual([1500, 3000, 6000, 10_000, 10_000]);
    expect(h.client.calls.filter((c) => c === 'upload a.txt')).toHaveLength(6);
    expect(h.client.completions).toEqual([
      {
        ...failed('artifact_missing', 'required artifact not stored: a.txt (upload_failed)'),
        artifactProblems: [{ pattern: 'a.txt', name: 'a.txt', reason: 'upload_failed', required: true, message: 'controller unreachable (POST /x): connect ECONNREFUSED' }],
      },
    ]);
  });

  it('an artifact the controller refuses as too large is not retried: too_large', async () => {
    const h = withArtifacts(['big.bin']);
    h.ws.onFindArtifacts = async () => new Map([['big.bin', ['big.bin']]]);
    h.client.onUpload = async () => {
      throw new ExpoError('HTTP_STATUS', 'PUT /x: 413 API_BODY_TOO_LARGE too large', { details: { method: 'PUT', path: '/x', status: 413, code: 'API_BODY_TOO_LARGE' } });
    };
    await h.clock.run(h.runner.run());
    expect(h.client.calls.filter((c) => c.startsWith('upload'))).toHaveLength(1);
    expect(h.client.completions[0]).toMatchObject({ status: 'succeeded', artifactProblems: [{ pattern: 'big.bin', name: 'big.bin', reason: 'too_large', required: false }] });
  });

  it('looking for artifacts failing: every pattern is an upload_failed problem', async () => {
    const h = withArtifacts(['a', 'b']);
    h.ws.onFindArtifacts = async () => {
      throw new Error("'cd …' exited 1: no such directory");
    };
    await h.clock.run(h.runner.run());
    expect(h.client.completions[0]!.artifactProblems).toEqual([
      { pattern: 'a', reason: 'upload_failed', required: false, message: "could not look for it in the VM: 'cd …' exited 1: no such directory" },
      { pattern: 'b', reason: 'upload_failed', required: false, message: "could not look for it in the VM: 'cd …' exited 1: no such directory" },
    ]);
  });

  it('one file matched by two patterns is one artifact; its name is its path under work/', async () => {
    const h = withArtifacts(['out/*', { path: './out//App.ipa', required: true }]);
    h.ws.onFindArtifacts = async () => new Map([['out/*', ['out/App.ipa']], ['./out//App.ipa', ['./out//App.ipa']]]);
    h.client.onUpload = async () => ({ sizeBytes: 3, sha256: 'x' });
    await h.clock.run(h.runner.run());
    expect(h.client.calls.filter((c) => c.startsWith('upload'))).toEqual(['upload out/App.ipa']);
    expect(h.client.completions[0]).toEqual({ lease: LEASE, status: 'succeeded', exitCode: 0 });
  });
});

describe('BuildRunner: timeouts', () => {
  it('prepare_timeout: the VM not ready within the prepare timeout, counted from the claim', async () => {
    const h = setup();
    h.acquire = (req) => pendingUntilAborted(req.signal);
    const t0 = h.clock.now();
    await h.clock.run(h.runner.run());
    expect(h.clock.now() - t0).toBe(60_000);
    expect(h.client.completions).toEqual([failed('prepare_timeout', 'the VM was not ready to run the steps within the prepare timeout of 60 s')]);
    expect(h.acquireRequests[0]!.signal.aborted).toBe(true);
  });

  it('timed_out: the steps past the build’s timeoutS, counted from running; the step is stopped', async () => {
    const h = setup({ build: { timeoutS: 900 } });
    h.ws.healthy();
    h.ws.onRunStep = (_i, io) => pendingUntilAborted(io.signal);
    h.ws.onStopStep = async () => undefined;
    const t0 = h.clock.now();
    await h.clock.run(h.runner.run());
    expect(h.clock.now() - t0).toBe(900_000);
    expect(h.client.completions).toEqual([failed('timed_out', "the steps ran past the build's timeout of 900 s")]);
    expect(h.ws.calls).toEqual(['startMonitor', 'runStep 0 0', 'stopStep 10000', 'stopMonitor']);
    expect(h.stream.notes()).toContain('stopping step 1: timed_out');
  });

  it('a slow boot does not eat the build’s time', async () => {
    const h = setup({ build: { timeoutS: 100, steps: [{ name: 'one', run: 'x' }] } });
    h.ws.healthy();
    h.acquire = () => h.clock.sleep(50_000).then(() => h.vm);
    h.ws.onRunStep = () => h.clock.sleep(90_000).then(() => 0);
    await h.clock.run(h.runner.run());
    expect(h.client.completions[0]!.status).toBe('succeeded');
  });
});

describe('BuildRunner: shutdown', () => {
  it('an agent aborting its builds reports worker_lost, so the build may run again', async () => {
    const h = setup();
    h.ws.healthy();
    h.ws.onRunStep = (_i, io) => pendingUntilAborted(io.signal);
    h.ws.onStopStep = async () => undefined;
    const { finish } = await start(h);
    expect(h.runner.abort('shutdown', 'the agent is stopping')).toBe(true);
    expect(h.runner.cancel()).toBe(false); // the first reason wins
    await finish();
    expect(h.client.completions).toEqual([failed('worker_lost', 'the agent is stopping')]);
  });
});

describe('BuildRunner: checkout of a GitHub build', () => {
  const SHA = '0123456789abcdef0123456789abcdef01234567';
  const CHECKOUT = { url: 'https://github.com/acme/app.git', sha: SHA, ref: 'refs/heads/main', submodules: false, lfs: false } as const;
  const TOKEN = 'ghs_cloneTokenValue123';
  const BASIC = Buffer.from(`x-access-token:${TOKEN}`).toString('base64');

  it('after the monitor starts and before step 0: fetches the token, masks it, checks the commit out with it under a header in the log', async () => {
    const h = setup({ build: { checkout: CHECKOUT } });
    h.ws.healthy();
    h.client.onCheckoutToken = async () => ({ token: TOKEN, expiresAt: '2026-12-03T10:30:00.000Z' });
    let credential: string | null | undefined;
    h.ws.onCheckout = async (_spec, c, io) => {
      credential = c;
      io.onOutput(Buffer.from('$ git fetch --no-tags --progress --depth=1 origin x\nReceiving objects: 100%\n'));
      return 0;
    };
    expect(await h.clock.run(h.runner.run())).toMatchObject({ kind: 'reported', body: { status: 'succeeded' } });
    expect(h.client.calls).toEqual(['phase preparing', 'phase running', 'checkoutToken', 'complete succeeded']);
    expect(h.ws.calls).toEqual(['startMonitor', `checkout ${SHA.slice(0, 12)}`, 'runStep 0 0', 'runStep 1 50', 'writeProgress 100', 'stopMonitor']);
    expect(credential).toBe(BASIC);
    expect(h.stream.addedSecrets).toEqual([TOKEN, BASIC]);
    expect(h.checkouts).toEqual([{ seconds: 0, ok: true }]);
    expect(h.stream.notes()).toContain(`--- checkout ${SHA} (refs/heads/main) from https://github.com/acme/app.git ---`);
    expect(h.stream.text).toContain('Receiving objects: 100%\n');
  });

  it('without a token (no GitHub credentials configured) clones anonymously', async () => {
    const h = setup({ build: { checkout: CHECKOUT } });
    h.ws.healthy();
    h.client.onCheckoutToken = async () => ({ token: null, expiresAt: null });
    let credential: string | null | undefined = 'unset';
    h.ws.onCheckout = async (_spec, c) => ((credential = c), 0);
    await h.clock.run(h.runner.run());
    expect(credential).toBeNull();
    expect(h.stream.addedSecrets).toEqual([]);
  });

  it('a checkout git refuses fails the build (build_failed) with the commit, the URL and git\'s last lines; no step runs', async () => {
    const h = setup({ build: { checkout: CHECKOUT } });
    h.ws.healthy();
    h.client.onCheckoutToken = async () => ({ token: TOKEN, expiresAt: null });
    h.ws.onCheckout = async (_spec, _c, io) => {
      io.onOutput(Buffer.from('$ git fetch origin x\nfatal: remote error: upload-pack: not our ref 0123\n'));
      return 1;
    };
    await h.clock.run(h.runner.run());
    expect(h.client.completions).toEqual([
      failed('build_failed', `checkout of ${SHA.slice(0, 12)} from https://github.com/acme/app.git failed: $ git fetch origin x | fatal: remote error: upload-pack: not our ref 0123`),
    ]);
    expect(h.ws.calls).toEqual(['startMonitor', `checkout ${SHA.slice(0, 12)}`, 'stopMonitor']);
  });

  it('a fetch that failed on the server\'s side (GitHub 5xx, the network) is an infrastructure failure, retried within maxAttempts', async () => {
    const h = setup({ build: { checkout: CHECKOUT } });
    h.ws.healthy();
    h.client.onCheckoutToken = async () => ({ token: TOKEN, expiresAt: null });
    h.ws.onCheckout = async (_spec, _c, io) => {
      io.onOutput(Buffer.from('error: RPC failed; HTTP 502 curl 22 The requested URL returned error: 502\nfatal: expected flush after ref listing\n'));
      return 1;
    };
    await h.clock.run(h.runner.run());
    expect(h.client.completions).toEqual([failed('worker_lost', /^checkout of 0123456789ab from https:\/\/github\.com\/acme\/app\.git failed: .*error: 502/)]);
  });

  it('no token from the controller: an infrastructure failure (worker_lost, retried) when it could not answer, build_failed when it refused', async () => {
    const h = setup({ build: { checkout: CHECKOUT } });
    h.ws.healthy();
    let options: unknown;
    h.client.onCheckoutToken = async (r) => {
      options = r;
      throw new ExpoError('HTTP_UNREACHABLE', 'POST /api/v1/builds/b1/checkout-token: 503 GITHUB_UNAVAILABLE GitHub is down');
    };
    await h.clock.run(h.runner.run());
    expect(options).toMatchObject({ retries: 5 });
    expect(h.client.completions).toEqual([failed('worker_lost', /no clone token from the controller: .*GITHUB_UNAVAILABLE/)]);
    expect(h.ws.calls).not.toContain(`checkout ${SHA.slice(0, 12)}`);

    const h2 = setup({ build: { checkout: CHECKOUT } });
    h2.ws.healthy();
    h2.client.onCheckoutToken = async () => {
      throw new ExpoError('HTTP_STATUS', 'POST /api/v1/builds/b1/checkout-token: 404 API_NOT_FOUND build b1 has no repository to check out', { details: { status: 404 } });
    };
    await h2.clock.run(h2.runner.run());
    expect(h2.client.completions).toEqual([failed('build_failed', /has no repository to check out/)]);
  });

  it('a 409 to the token request: the attempt is over — abandoned, nothing reported, no checkout', async () => {
    const h = setup({ build: { checkout: CHECKOUT } });
    h.ws.healthy();
    h.client.onCheckoutToken = async () => {
      throw attemptOver();
    };
    expect(await h.clock.run(h.runner.run())).toMatchObject({ kind: 'abandoned' });
    expect(h.client.completions).toEqual([]);
    expect(h.ws.calls).toEqual(['startMonitor']);
  });

  it('a clone URL with credentials in it is refused before any token is asked for', async () => {
    const h = setup({ build: { checkout: { ...CHECKOUT, url: 'https://user:pw@github.com/acme/app.git' } } });
    h.ws.healthy();
    await h.clock.run(h.runner.run());
    expect(h.client.completions).toEqual([failed('build_failed', /failed: the clone URL holds credentials/)]);
    expect(h.client.calls).not.toContain('checkoutToken');
    expect(JSON.stringify(h.client.completions)).not.toContain('pw@');
  });

  it('a commit or ref that could read as an option is refused before anything runs', async () => {
    for (const bad of [{ sha: '--upload-pack=touch /tmp/x' }, { ref: '--upload-pack=x' }, { ref: 'refs/heads/a b' }]) {
      const h = setup({ build: { checkout: { ...CHECKOUT, ...bad } } });
      h.ws.healthy();
      await h.clock.run(h.runner.run());
      expect(h.client.completions).toEqual([failed('build_failed', /failed: the (commit is not 40 hex digits|ref is not a full git ref)/)]);
      expect(h.ws.calls).not.toContain(expect.stringMatching(/^checkout/));
    }
  });

  it('cancel during the checkout: it is aborted, no step runs, the build is cancelled', async () => {
    const h = setup({ build: { checkout: CHECKOUT } });
    h.ws.healthy();
    h.client.onCheckoutToken = async () => ({ token: TOKEN, expiresAt: null });
    let signal: AbortSignal | undefined;
    h.ws.onCheckout = (_spec, _c, io) => ((signal = io.signal), pendingUntilAborted(io.signal));
    const { finish } = await start(h);
    expect(h.ws.calls.at(-1)).toBe(`checkout ${SHA.slice(0, 12)}`);
    h.runner.cancel();
    await finish();
    expect(signal?.aborted).toBe(true);
    expect(h.client.completions).toEqual([{ lease: LEASE, status: 'cancelled', message: 'cancel requested' }]);
    expect(h.ws.calls).toEqual(['startMonitor', `checkout ${SHA.slice(0, 12)}`, 'stopMonitor']);
  });
});

describe('BuildRunner: step starts', () => {
  it('reports each step as it starts, before the step runs, with the attempt going on without waiting for it', async () => {
    const h = setup();
    h.ws.healthy();
    const seenAtRun: number[][] = [];
    h.ws.onRunStep = async () => {
      seenAtRun.push([...h.client.stepStarts]);
      return 0;
    };
    const outcome = await h.clock.run(h.runner.run());
    expect(outcome.kind).toBe('reported');
    expect(h.client.stepStarts).toEqual([0, 1]);
    expect(seenAtRun).toEqual([[0], [0, 1]]);
    expect(h.client.calls).toEqual(['phase preparing', 'phase running', 'complete succeeded']);
  });

  it('a step start the controller does not take is logged; the build goes on and succeeds', async () => {
    const h = setup();
    h.ws.healthy();
    h.client.onStepStarted = async (index) => {
      if (index === 0) throw unreachable();
    };
    const outcome = await h.clock.run(h.runner.run());
    expect(outcome).toEqual({ kind: 'reported', body: { status: 'succeeded', exitCode: 0 }, answer: 'succeeded' });
    expect(h.client.stepStarts).toEqual([0, 1]);
    expect(h.lines).toContainEqual(expect.objectContaining({ msg: 'step start not reported; the build goes on', step: 0, err: expect.stringContaining('ECONNREFUSED') }));
  });

  it('a 409 to a step start ends the attempt as over, like any other call: the step is stopped, nothing reported', async () => {
    const h = setup();
    h.ws.healthy();
    h.client.onStepStarted = async () => {
      throw attemptOver();
    };
    h.ws.onRunStep = (_i, io) => pendingUntilAborted(io.signal);
    const outcome = await h.clock.run(h.runner.run());
    expect(outcome).toEqual({ kind: 'abandoned', why: expect.stringContaining('LEASE_STALE') });
    expect(h.client.stepStarts).toEqual([0]);
    expect(h.client.completions).toEqual([]);
  });
});

describe('BuildRunner: the workspace starts beside the last health checks', () => {
  it('opens the workspace and starts the monitor once SSH answers, before acquire returns, and runs the steps only after it does', async () => {
    const h = setup();
    h.ws.healthy();
    const checks = deferred<BuildVm>();
    h.acquire = (req) => {
      req.onSshReady?.(h.vm);
      return checks.promise;
    };
    const { finish } = await start(h);
    // Still preparing (the checks run), and the monitor start is already under way.
    expect(h.runner.state).toBe('preparing');
    expect(h.ws.calls).toEqual(['startMonitor']);
    expect(h.spec?.id).toBe('b1');
    checks.resolve(h.vm);
    const outcome = await finish();
    expect(outcome.kind).toBe('reported');
    expect(h.client.completions).toEqual([{ lease: LEASE, status: 'succeeded', exitCode: 0 }]);
    // Started once: the early start is the one awaited, not a second.
    expect(h.ws.calls).toEqual(['startMonitor', 'runStep 0 0', 'runStep 1 50', 'writeProgress 100', 'stopMonitor']);
  });

  it('a failing disk check still fails the build as vm_unhealthy with its reason, though the monitor started early; no step runs and nothing is asked of the released VM', async () => {
    const h = setup();
    h.ws.healthy();
    h.acquire = async (req) => {
      req.onSshReady?.(h.vm);
      throw new ExpoError('VM_UNHEALTHY', 'expo-w1-b1-1: disk-space failed: 3.0 GiB free of 50.0 GiB on /, below the 20 GiB minimum');
    };
    await h.clock.run(h.runner.run());
    expect(h.client.completions).toEqual([failed('vm_unhealthy', /disk-space failed: 3\.0 GiB free/)]);
    expect(h.ws.calls).toEqual(['startMonitor']);
    expect(h.monitorStartFailures).toBe(0);
  });

  it('a monitor that fails to start early fails the attempt as before once the checks pass', async () => {
    const h = setup();
    h.ws.healthy();
    h.ws.onStartMonitor = async () => {
      throw new Error('the monitor did not start');
    };
    h.acquire = async (req) => {
      req.onSshReady?.(h.vm);
      return h.vm;
    };
    await h.clock.run(h.runner.run());
    expect(h.client.completions).toEqual([failed('vm_unhealthy', 'vm-monitor.sh could not be started: the monitor did not start')]);
    expect(h.monitorStartFailures).toBe(1);
    expect(h.ws.calls).toEqual(['startMonitor', 'stopMonitor']);
  });
});
