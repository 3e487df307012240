/**
 * The daemon's bookkeeping with stand-in runners and a scripted controller client (both refuse
 * what they do not expect): slots, the builds it lists, and a retry claimed while the previous
 * attempt of the same build is still deleting its VM.
 */
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent, type Runner } from '../../../src/agent/agent.ts';
import type { Outcome } from '../../../src/agent/build-runner.ts';
import type { PollBody, PollResponse, WorkerHeartbeatBody } from '../../../src/protocol/schemas.ts';
import type { Liveness } from '../../../src/protocol/liveness.ts';
import type { AgentIntervals } from '../../../src/monitor/watchdog-policy.ts';

const claim = (id: string, attempt: number): PollResponse => ({
  build: { id, steps: [{ name: 's', run: 'true' }], env: {}, labels: [], timeoutS: 60, attempt, maxAttempts: 2, logOffset: 0, artifacts: [] },
  lease: `ewl_lease-${id}-${attempt}`,
  buildToken: `ewb_token-${id}-${attempt}`,
});

class FakeRunner implements Runner {
  readonly buildId: string;
  private finish!: (o: Outcome) => void;
  readonly done = new Promise<Outcome>((r) => (this.finish = r));
  aborted: string | null = null;
  cancelled = false;
  constructor(c: PollResponse) {
    this.buildId = c.build.id;
  }
  run(): Promise<Outcome> {
    return this.done;
  }
  abort(reason: string): boolean {
    if (this.aborted !== null || this.cancelled) return false;
    this.aborted = reason;
    return true;
  }
  cancel(): boolean {
    if (this.aborted !== null || this.cancelled) return false;
    this.cancelled = true;
    return true;
  }
  end(): void {
    this.finish({ kind: 'reported', body: { status: 'succeeded' }, answer: 'succeeded' });
  }
}

let agent: Agent | undefined;
afterEach(async () => {
  await agent?.abortAll();
  agent = undefined;
});

/** Resolves after `ms`, when `signal` aborts, or when `poke` is called. */
function pause(ms: number, signal?: AbortSignal, hook?: (poke: () => void) => void): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    const done = () => (clearTimeout(t), resolve());
    signal?.addEventListener('abort', done, { once: true });
    hook?.(done);
  });
}

function setup(claims: PollResponse[], o: { liveness?: Liveness; workerHeartbeatS?: number } = {}) {
  const polls: PollBody[] = [];
  const heartbeats: WorkerHeartbeatBody[] = [];
  const runners: FakeRunner[] = [];
  const intervals: AgentIntervals[] = [];
  let answerCancel: string[] = [];
  let cancelAlways: string[] = [];
  // Like the controller: a heartbeat waits up to waitS for news, and answers at once when there is some.
  let pokeHeartbeat: (() => void) | null = null;
  const liveness = o.liveness ?? null;
  const client = {
    poll: async (body: PollBody, signal?: AbortSignal) => {
      polls.push(body);
      const next = claims.shift();
      if (next) return { claim: next, liveness };
      await pause(50, signal);
      return { claim: null, liveness };
    },
    workerHeartbeat: async (body: WorkerHeartbeatBody, r?: { signal?: AbortSignal }) => {
      heartbeats.push(body);
      const waitMs = Math.min((body.waitS ?? 0) * 1000, liveness ? liveness.heartbeatTimeoutMs / 4 : Infinity);
      if (answerCancel.length === 0 && cancelAlways.length === 0) await pause(waitMs, r?.signal, (poke) => (pokeHeartbeat = poke));
      pokeHeartbeat = null;
      if (r?.signal?.aborted) throw new Error('aborted');
      const cancel = [...answerCancel, ...cancelAlways];
      answerCancel = [];
      return { abort: [], cancel, liveness };
    },
  };
  agent = new Agent({
    client,
    log: pino({ level: 'silent' }),
    makeRunner: (c, used) => {
      intervals.push(used);
      const r = new FakeRunner(c);
      runners.push(r);
      return r;
    },
    reap: async () => ({ deleted: [], failed: [] }),
    preflight: async () => [{ name: 'tart-found', ok: true, detail: 'ok', durationMs: 0 }],
    settings: {
      slots: 2,
      pollWaitS: 1,
      workerHeartbeatS: o.workerHeartbeatS ?? 3600,
      preparingKeepaliveS: 15,
      heartbeatIntervalS: 30,
      reconnectDelayS: 0.05,
      preflightRetryS: 1,
      maintenanceCron: '0 0 1 1 *',
    },
  });
  return {
    agent,
    polls,
    heartbeats,
    runners,
    intervals,
    cancelAlways: (ids: string[]) => (cancelAlways = ids),
    cancelNext: (ids: string[]) => {
      answerCancel = ids;
      pokeHeartbeat?.();
    },
  };
}

// Generous: a busy machine may be slow, and the loop ends as soon as the condition holds.
const until = async (cond: () => boolean) => {
  for (let i = 0; i < 2000 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(cond()).toBe(true);
};

describe('Agent', () => {
  it('keeps track of a retry claimed while the previous attempt of the same build is still finishing', async () => {
    const s = setup([claim('aaaaaaaaaaaaaaaa', 1), claim('aaaaaaaaaaaaaaaa', 2)]);
    await s.agent.start();
    await until(() => s.runners.length === 2);
    expect(s.agent.status()).toMatchObject({ slotsBusy: 2, runningBuilds: ['aaaaaaaaaaaaaaaa'] });
    s.runners[0]!.end(); // attempt 1 done deleting its VM
    await until(() => s.agent.status().slotsBusy === 1);
    expect(s.agent.status().runningBuilds).toEqual(['aaaaaaaaaaaaaaaa']);
    // The next poll still lists the build the second attempt runs, and offers one free slot.
    await until(() => s.polls.at(-1)?.slotsFree === 1);
    expect(s.polls.at(-1)?.runningBuilds).toEqual(['aaaaaaaaaaaaaaaa']);
    s.runners[1]!.end();
    await until(() => s.agent.status().slotsBusy === 0);
  });

  it('never polls for more builds than it has free slots', async () => {
    const s = setup([claim('aaaaaaaaaaaaaaaa', 1), claim('bbbbbbbbbbbbbbbb', 1), claim('cccccccccccccccc', 1)]);
    await s.agent.start();
    await until(() => s.runners.length === 2);
    await new Promise((r) => setTimeout(r, 150));
    expect(s.runners).toHaveLength(2);
    expect(s.polls.every((p) => p.slotsFree >= 1)).toBe(true);
    s.runners[0]!.end();
    await until(() => s.runners.length === 3);
    s.runners[1]!.end();
    s.runners[2]!.end();
  });

  it('passes a cancel to the runner as soon as the waiting heartbeat answers, not at the next interval', async () => {
    // A minute between heartbeats: only the heartbeat held open at the controller can carry it.
    const s = setup([claim('aaaaaaaaaaaaaaaa', 1)], { workerHeartbeatS: 60, liveness: { heartbeatTimeoutMs: 600_000, pollWaitMaxMs: 25_000, prepareTimeoutMs: 600_000 } });
    await s.agent.start();
    await until(() => s.runners.length === 1);
    // The claim sent a fresh heartbeat listing the build, waiting for news (at most the API's 25 s).
    await until(() => s.heartbeats.at(-1)?.runningBuilds.includes('aaaaaaaaaaaaaaaa') === true && s.heartbeats.at(-1)?.waitS !== undefined);
    expect(s.heartbeats.at(-1)?.waitS).toBe(25);
    s.cancelNext(['aaaaaaaaaaaaaaaa']);
    await until(() => s.runners[0]!.cancelled);
    s.runners[0]!.end();
  });

  it('asks an older controller (one that states no clocks) for no wait: it refuses the field', async () => {
    const s = setup([claim('aaaaaaaaaaaaaaaa', 1)], { workerHeartbeatS: 0.05 });
    await s.agent.start();
    await until(() => s.heartbeats.length >= 3);
    expect(s.heartbeats.every((h) => h.waitS === undefined)).toBe(true);
    s.runners[0]!.end();
  });

  it('does not spin when the controller keeps answering at once about what is already being done', async () => {
    // A cancel being carried out (or a build deleting its VM) is in every answer until it ends.
    const s = setup([claim('aaaaaaaaaaaaaaaa', 1)], { workerHeartbeatS: 2, liveness: { heartbeatTimeoutMs: 120_000, pollWaitMaxMs: 25_000, prepareTimeoutMs: 600_000 } });
    s.cancelAlways(['aaaaaaaaaaaaaaaa']);
    await s.agent.start();
    await until(() => s.runners[0]?.cancelled === true);
    const before = s.heartbeats.length;
    await new Promise((r) => setTimeout(r, 1000));
    // One interval (2 s) has not passed since the cancel: at most the one that carried it and one more.
    expect(s.heartbeats.length - before).toBeLessThanOrEqual(2);
    s.runners[0]!.end();
  });

  it('derives its intervals from the heartbeat timeout the controller states: a quarter, a long poll at most half', async () => {
    const s = setup([], { liveness: { heartbeatTimeoutMs: 6000, pollWaitMaxMs: 3000, prepareTimeoutMs: 600_000 }, workerHeartbeatS: 15 });
    await s.agent.start();
    await until(() => s.heartbeats.length >= 2 && s.polls.length >= 2);
    // The first of each leaves before anything was heard; from then on the controller's clock rules.
    expect(s.heartbeats.at(-1)?.waitS).toBe(1.5);
    expect(s.agent.intervals()).toEqual({ workerHeartbeatMs: 1500, preparingKeepaliveMs: 1500, monitorIntervalS: 1, monitorRequestTimeoutS: 3, pollWaitS: 1 });
  });

  it('hands each runner the intervals in force when it was claimed', async () => {
    const s = setup([claim('aaaaaaaaaaaaaaaa', 1)], { liveness: { heartbeatTimeoutMs: 20_000, pollWaitMaxMs: 10_000, prepareTimeoutMs: 600_000 } });
    await s.agent.start();
    await until(() => s.runners.length === 1);
    expect(s.intervals[0]).toEqual({ workerHeartbeatMs: 5000, preparingKeepaliveMs: 5000, monitorIntervalS: 5, monitorRequestTimeoutS: 10, pollWaitS: 1 });
    s.runners[0]!.end();
  });

  it('drains: stops polling and waits for running builds', async () => {
    const s = setup([claim('aaaaaaaaaaaaaaaa', 1)]);
    await s.agent.start();
    await until(() => s.runners.length === 1);
    const drained = s.agent.drain();
    let done = false;
    void drained.then(() => (done = true));
    await new Promise((r) => setTimeout(r, 100));
    expect(done).toBe(false);
    const pollsAtDrain = s.polls.length;
    s.runners[0]!.end();
    await drained;
    expect(s.agent.state).toBe('stopped');
    expect(s.polls.length).toBe(pollsAtDrain);
  });
});
