/**
 * The build runner's caches seam (build-caches.ts' port): the VM comes with its shares (a
 * standby booted before the claim too), the copies are checked out into them once the build has
 * its VM, linked before the steps, and promoted only after a successful build's VM is deleted;
 * any other ending discards them. Fakes and a fake clock, as build-runner.test.ts.
 */
import { describe, expect, it } from 'vitest';
import type { RunnerCaches, RunnerCacheSession } from '../../../src/agent/build-caches.ts';
import { BuildRunner } from '../../../src/agent/build-runner.ts';
import type { PollResponse } from '../../../src/protocol/schemas.ts';
import { FakeClock } from '../../support/fake-clock.ts';
import { captureLogger, FakeBuildVm, FakeRunnerClient, FakeRunnerLog, FakeWorkspace } from '../../support/fake-runner-ports.ts';

function setup(exitCode: number, releaseFails = false, checkout?: (signal: AbortSignal) => Promise<void>) {
  const events: string[] = [];
  const claim: PollResponse = {
    build: { id: 'b1', steps: [{ name: 'build', run: 'make' }], env: { LOCK: 'x' }, secretEnv: { TOKEN: 's' }, labels: [], timeoutS: 600, attempt: 1, maxAttempts: 1, logOffset: 0, artifacts: [] },
    lease: 'ewl_lease',
    buildToken: 'ewb_token',
  };
  const vm = new FakeBuildVm();
  vm.onRelease = async () => {
    events.push('vm released');
    if (releaseFails) throw new Error('tart delete failed');
  };
  const ws = new FakeWorkspace().healthy();
  ws.onRunStep = async () => (events.push('step'), exitCode);
  const session: RunnerCacheSession = {
    checkout: checkout ?? (async () => void events.push('checkout')),
    link: async () => void events.push('link'),
    settle: async () => void events.push('settle'),
    end: async (succeeded) => void events.push(`end ${succeeded}`),
  };
  const caches: RunnerCaches = {
    shares: async () => [],
    removeVm: async () => void events.push('removeVm'),
    open: (build, vmName, note) => {
      events.push(`open ${build.id}-${build.attempt} on ${vmName} env ${JSON.stringify(build.env)}`);
      note('cache pods: hit');
      return session;
    },
  };
  const clock = new FakeClock();
  const stream = new FakeRunnerLog();
  const client = new FakeRunnerClient();
  client.onPhase = async (phase) => void events.push(`phase ${phase}`);
  const runner = new BuildRunner(claim, {
    clock,
    client,
    caches,
    acquireVm: async () => (events.push('acquire'), vm),
    openWorkspace: () => ws,
    openLog: (options) => ((stream.options = options), stream),
    settings: { workerId: 'w1', prepareTimeoutMs: 60_000, logDir: '/tmp', stepStopGraceMs: 1000, preparingKeepaliveMs: 5000, reportDeadlineMs: 60_000 },
    log: captureLogger().log,
  });
  return { events, clock, runner, stream, client, vmName: vm.name };
}

describe('BuildRunner with host caches', () => {
  it('checks out into the VM\'s shares once it has its VM (without the secrets), links before the steps, promotes after the VM is gone', async () => {
    const h = setup(0);
    const outcome = await h.clock.run(h.runner.run());
    expect(outcome).toMatchObject({ kind: 'reported', body: { status: 'succeeded' } });
    expect(h.events.filter((e) => e !== 'phase preparing')).toEqual([
      'acquire',
      `open b1-1 on ${h.vmName} env {"LOCK":"x"}`,
      'checkout',
      'phase running',
      'link',
      'step',
      'settle',
      'vm released',
      'end true',
    ]);
    expect(h.stream.notes()).toContain('cache pods: hit');
  });

  it('the copy is part of preparing: running is reported after it; a copy past the prepare timeout is aborted (prepare_timeout), never the steps\' timeout', async () => {
    let copySignal: AbortSignal | undefined;
    const h = setup(0, false, (signal) => {
      copySignal = signal;
      // A real copy of a large cache: it ends when it is killed.
      return new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
    });
    const t0 = h.clock.now();
    const outcome = await h.clock.run(h.runner.run());
    expect(h.clock.now() - t0).toBe(60_000);
    expect(outcome).toMatchObject({ kind: 'reported', body: { status: 'failed', failureReason: 'prepare_timeout' } });
    expect(copySignal?.aborted).toBe(true);
    expect(h.events).not.toContain('phase running');
    expect(h.events).not.toContain('link');
    expect(h.events).not.toContain('step');
    expect(h.events.slice(-2)).toEqual(['vm released', 'end false']);
  });

  it('a failed build discards its copies', async () => {
    const h = setup(2);
    const outcome = await h.clock.run(h.runner.run());
    expect(outcome).toMatchObject({ kind: 'reported', body: { status: 'failed', failureReason: 'build_failed' } });
    expect(h.events.slice(-2)).toEqual(['vm released', 'end false']);
    expect(h.events).not.toContain('settle');
  });

  it('a succeeded build whose VM was not deleted cleanly discards its copies (the VM may still be writing)', async () => {
    const h = setup(0, true);
    const outcome = await h.clock.run(h.runner.run());
    expect(outcome).toMatchObject({ kind: 'reported', body: { status: 'succeeded' } });
    expect(h.events.slice(-3)).toEqual(['settle', 'vm released', 'end false']);
  });
});
