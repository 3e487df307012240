/**
 * How a settlement is applied: which store write, who is told. A fake store that answers only
 * the calls a case expects (any other call fails the test) and records what it was asked.
 */
import { describe, expect, it } from 'vitest';
import { AttemptEndings, type BuildEvent } from '../../../src/controller/attempt-endings.ts';
import type { AttemptEnd, BuildRecord } from '../../../src/controller/store/store.ts';

const record = (over: Partial<BuildRecord> = {}): BuildRecord => ({
  id: 'aaaaaaaaaaaaaaaa',
  status: 'running',
  steps: [{ name: 's', run: 'true' }],
  env: {},
  secretEnvNames: [],
  secretEnvSealed: null,
  labels: [],
  timeoutS: 60,
  maxAttempts: 2,
  artifacts: [],
  artifactProblems: [],
  attempt: 1,
  workerId: 'w1',
  lease: 'digest',
  progress: null,
  failureReason: null,
  message: null,
  exitCode: null,
  cancelRequested: false,
  logBytes: 0,
  createdAt: 1,
  assignedAt: 2,
  startedAt: 3,
  stepStartedAt: [null],
  finishedAt: null,
  lastHeartbeatAt: 4,
  source: null,
  reported: null,
  checkRunId: null,
  ...over,
});

type Answers = { unassign?: boolean; finishAttempt?: BuildRecord | null; getBuild?: BuildRecord | null };

function harness(answers: Answers) {
  const calls: string[] = [];
  const finished: AttemptEnd[] = [];
  const events: BuildEvent[] = [];
  const answer = <K extends keyof Answers>(name: K): NonNullable<Answers[K]> | null => {
    calls.push(name);
    if (!(name in answers)) throw new Error(`unexpected store call ${name}`);
    return answers[name] ?? null;
  };
  const endings = new AttemptEndings({
    store: {
      unassign: async () => answer('unassign') === true,
      finishAttempt: async (end) => {
        finished.push(end);
        return answer('finishAttempt');
      },
      getBuild: async () => answer('getBuild'),
    },
    now: () => 1000,
    dispatcher: { notify: () => calls.push('notify') },
    waits: { wake: (id) => calls.push(`wake ${id}`) },
    onBuildEvent: (e) => events.push(e),
  });
  return { endings, calls, finished, events };
}

describe('AttemptEndings', () => {
  it('takes back an unacknowledged build: unassigned, the dispatcher told, the worker not woken, no event', async () => {
    const back = record({ status: 'queued', lease: null, workerId: null });
    const h = harness({ unassign: true, getBuild: back });
    const settled = await h.endings.giveUp(record({ status: 'assigned' }), 'worker_lost', 'gone');
    expect(settled).toEqual({ settlement: { kind: 'take-back' }, build: back });
    expect(h.calls).toEqual(['unassign', 'notify', 'getBuild']);
    expect(h.events).toEqual([]);
  });

  it('requeues an infrastructure failure: the attempt ends requeued, the event and the dispatcher told, its worker woken', async () => {
    const queued = record({ status: 'queued', lease: null });
    const h = harness({ finishAttempt: queued });
    const settled = await h.endings.giveUp(record(), 'heartbeat_timeout', 'no heartbeat for 120s');
    expect(settled.build).toBe(queued);
    expect(h.finished).toEqual([
      { buildId: 'aaaaaaaaaaaaaaaa', lease: 'digest', now: 1000, exitCode: null, status: 'failed', failureReason: 'heartbeat_timeout', message: 'no heartbeat for 120s', requeue: true },
    ]);
    expect(h.events).toEqual([{ kind: 'requeued', build: queued, reason: 'heartbeat_timeout' }]);
    expect(h.calls).toEqual(['finishAttempt', 'notify', 'wake w1']);
  });

  it('ends an unacknowledged build with a cancel pending as cancelled, saying so, without waking its worker', async () => {
    const done = record({ status: 'cancelled', lease: null });
    const h = harness({ finishAttempt: done });
    await h.endings.giveUp(record({ status: 'assigned', cancelRequested: true }), 'heartbeat_timeout', 'no heartbeat for 120s');
    expect(h.finished[0]).toMatchObject({ status: 'cancelled', failureReason: null, message: 'cancelled before its worker started it', requeue: false });
    expect(h.events).toEqual([{ kind: 'finished', build: done }]);
    expect(h.calls).toEqual(['finishAttempt']);
  });

  it("a worker's own completion ends the build with what it reported, and wakes no one", async () => {
    const done = record({ status: 'succeeded', lease: null });
    const h = harness({ finishAttempt: done });
    const settled = await h.endings.settle(record(), { by: 'worker', status: 'succeeded', reason: null }, 0, 'ok');
    expect(settled).toEqual({ settlement: { kind: 'end', status: 'succeeded', reason: null }, build: done });
    expect(h.finished[0]).toMatchObject({ status: 'succeeded', exitCode: 0, message: 'ok', requeue: false });
    expect(h.calls).toEqual(['finishAttempt']);
  });

  it('a lost race (the lease moved on) tells no one', async () => {
    const h = harness({ finishAttempt: null });
    expect((await h.endings.giveUp(record(), 'timed_out', 'late')).build).toBeNull();
    expect(h.events).toEqual([]);
    expect(h.calls).toEqual(['finishAttempt']);
  });

  it('a build with no current attempt touches nothing', async () => {
    const h = harness({});
    expect(await h.endings.giveUp(record({ status: 'failed', lease: null }), 'worker_lost', 'gone')).toEqual({ settlement: { kind: 'none' }, build: null });
    expect(h.calls).toEqual([]);
  });
});
