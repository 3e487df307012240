/**
 * The daemon's bookkeeping with stand-in runners and a scripted controller client (both refuse
 * what they do not expect): slots, the builds it lists, and a retry claimed while the previous
 * attempt of the same build is still deleting its VM.
 */
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent, type Runner } from '../../../src/agent/agent.ts';
import type { Outcome } from '../../../src/agent/build-runner.ts';
import type { PollBody, PollResponse } from '../../../src/protocol/schemas.ts';

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
  abort(reason: string): void {
    this.aborted = reason;
  }
  cancel(): void {
    this.cancelled = true;
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

function setup(claims: PollResponse[]) {
  const polls: PollBody[] = [];
  const heartbeats: string[][] = [];
  const runners: FakeRunner[] = [];
  let answerCancel: string[] = [];
  const client = {
    poll: async (body: PollBody, signal?: AbortSignal) => {
      polls.push(body);
      const next = claims.shift();
      if (next) return next;
      await new Promise((r) => {
        const t = setTimeout(r, 50);
        signal?.addEventListener('abort', () => (clearTimeout(t), r(null)), { once: true });
      });
      return null;
    },
    workerHeartbeat: async (body: { runningBuilds: string[] }) => {
      heartbeats.push(body.runningBuilds);
      const cancel = answerCancel;
      answerCancel = [];
      return { abort: [], cancel };
    },
  };
  agent = new Agent({
    client,
    log: pino({ level: 'silent' }),
    makeRunner: (c) => {
      const r = new FakeRunner(c);
      runners.push(r);
      return r;
    },
    reap: async () => ({ deleted: [], failed: [] }),
    preflight: async () => [{ name: 'tart-found', ok: true, detail: 'ok', durationMs: 0 }],
    settings: { slots: 2, pollWaitS: 1, workerHeartbeatS: 3600, reconnectDelayS: 0.05, preflightRetryS: 1, maintenanceCron: '0 0 1 1 *' },
  });
  return { agent, polls, heartbeats, runners, cancelNext: (ids: string[]) => (answerCancel = ids) };
}

const until = async (cond: () => boolean) => {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
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

  it('passes a cancel from the controller to the runner of that build', async () => {
    const s = setup([claim('aaaaaaaaaaaaaaaa', 1)]);
    await s.agent.start();
    await until(() => s.runners.length === 1);
    s.cancelNext(['aaaaaaaaaaaaaaaa']);
    await (s.agent as unknown as { heartbeat: () => Promise<void> }).heartbeat();
    expect(s.runners[0]!.cancelled).toBe(true);
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
