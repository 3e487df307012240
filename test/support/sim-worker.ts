/**
 * A simulated worker for the multi-controller tests: an in-test client of the worker protocol,
 * speaking it as the real agent does (the worker key for polls, phases, log chunks, worker
 * heartbeats and completion; the build token for build heartbeats), without VMs. It knows two
 * controllers, its home first, and moves to the other when its controller stops answering (a
 * refused or reset connection, or a 502/503/504), as the agent's `controllerUrl` list does; every call
 * after a poll is idempotent on the controller, so a call cut by a dying controller is simply
 * sent again to the other.
 *
 * Each build it claims: phase `preparing`, phase `running`, a few log chunks (multi-byte UTF-8,
 * named by the build so a misplaced byte shows), then `complete`; build and worker heartbeats go
 * out every quarter of the heartbeat timeout while it holds the build. `freeze()` makes it go
 * silent about the build it runs (or the next one it gets): no more build heartbeats, no chunks,
 * no completion, while its worker heartbeats keep listing the build — a VM that froze under a live
 * agent — until the controller fails that build; then it carries on with the next.
 */
import { Agent, request } from 'undici';
import { pathOf, ROUTES } from '../../src/protocol/routes.ts';
import type { PollResponse } from '../../src/protocol/schemas.ts';

/** The log a simulated worker writes for one build, chunk by chunk: the test checks it byte for byte. */
export function simLogChunks(buildId: string, chunks = 3): string[] {
  return Array.from({ length: chunks }, (_, k) => `${buildId} chunk ${k}: ünïcödé ✓ 🚀 ${'x'.repeat(17 * k)}\n`);
}

export interface SimClaim {
  buildId: string;
  workerId: string;
  attempt: number;
  /** The controller (base URL) that handed the build out. */
  via: string;
}

export interface SimWorkerOptions {
  id: string;
  apiKey: string;
  /** The controllers' base URLs, home first. */
  urls: [string, string];
  heartbeatTimeoutMs: number;
  dispatcher: Agent;
  /** Told of every claim (a test counts them: each build must be claimed exactly once). */
  onClaim: (c: SimClaim) => void;
  /** Told of every build completed (`succeeded`) with the URL it was completed through. */
  onComplete: (buildId: string, via: string) => void;
  /** How long one call may keep failing over before the worker gives up (a test failure). Default 60 s. */
  giveUpMs?: number;
}

interface Answer {
  status: number;
  body: any;
}

export class SimWorker {
  readonly id: string;
  private readonly o: SimWorkerOptions;
  private current = 0;
  private stopped = false;
  private freezeRequested = false;
  private loop: Promise<void> | null = null;
  /** The frozen build, once the worker froze one. */
  frozenBuildId: string | null = null;
  /** How many times it moved to the other controller. */
  switches = 0;
  /** The first error that stopped the worker (a test asserts there is none). */
  error: Error | null = null;

  constructor(o: SimWorkerOptions) {
    this.o = o;
    this.id = o.id;
  }

  get url(): string {
    return this.o.urls[this.current]!;
  }

  start(): void {
    this.loop = this.run().catch((err: Error) => {
      this.error = err;
    });
  }

  /** Goes silent about the build it runs now, or else the next one it gets. */
  freeze(): void {
    this.freezeRequested = true;
  }

  /** Ends the loop after the current poll or build (a frozen build is dropped) and waits for it. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }

  /** One call, moved to the other controller while this one does not answer. */
  private async call(method: 'POST' | 'GET', path: string, body: unknown, key = this.o.apiKey, timeoutMs = 30_000): Promise<Answer> {
    const giveUpAt = Date.now() + (this.o.giveUpMs ?? 60_000);
    let last: unknown = null;
    while (Date.now() < giveUpAt) {
      const url = this.url;
      try {
        const res = await request(`${url}${path}`, {
          method,
          dispatcher: this.o.dispatcher,
          headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
          body: body === undefined ? undefined : JSON.stringify(body),
          headersTimeout: timeoutMs,
          bodyTimeout: timeoutMs,
        });
        const text = await res.body.text();
        // As the agent: a gateway's "no controller behind me" moves on; any other answer is one.
        if (![502, 503, 504].includes(res.statusCode)) return { status: res.statusCode, body: text === '' ? null : JSON.parse(text) };
        last = new Error(`${method} ${path} on ${url}: ${res.statusCode} ${text}`);
      } catch (err) {
        last = err;
      }
      if (this.stopped) break;
      // This controller does not answer: the other one serves every worker and every build.
      this.current = 1 - this.current;
      this.switches++;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`${this.id}: ${method} ${path} failed on both controllers: ${(last as Error | null)?.message ?? 'stopped'}`);
  }

  private async expectOk(method: 'POST' | 'GET', path: string, body: unknown, key?: string): Promise<any> {
    const res = await this.call(method, path, body, key);
    if (res.status >= 300) throw new Error(`${this.id}: ${method} ${path}: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const res = await this.call(ROUTES.poll.method, pathOf(ROUTES.poll, { id: this.id }), { slotsFree: 1, runningBuilds: [], waitS: 2 }, undefined, 20_000);
      if (res.status === 204) continue;
      if (res.status !== 200) throw new Error(`${this.id}: poll: ${res.status} ${JSON.stringify(res.body)}`);
      const claim = res.body as PollResponse;
      this.o.onClaim({ buildId: claim.build.id, workerId: this.id, attempt: claim.build.attempt, via: this.url });
      await this.runBuild(claim);
    }
  }

  private async runBuild(claim: PollResponse): Promise<void> {
    const id = claim.build.id;
    const { lease, buildToken } = claim;
    const everyMs = this.o.heartbeatTimeoutMs / 4;
    let beating = true;
    const beat = async (): Promise<void> => {
      if (beating) await this.expectOk(ROUTES.buildHeartbeat.method, pathOf(ROUTES.buildHeartbeat, { id }), { progress: 50 }, buildToken);
      await this.expectOk(ROUTES.workerHeartbeat.method, pathOf(ROUTES.workerHeartbeat, { id: this.id }), { runningBuilds: [id] });
    };
    // Heartbeats run beside the build's calls, as the agent's and vm-monitor's do.
    let beatError: Error | null = null;
    const timer = setInterval(() => void beat().catch((err: Error) => (beatError ??= err)), everyMs);
    try {
      await this.expectOk(ROUTES.phase.method, pathOf(ROUTES.phase, { id }), { lease, phase: 'preparing' });
      await this.expectOk(ROUTES.phase.method, pathOf(ROUTES.phase, { id }), { lease, phase: 'running' });
      await beat();
      let offset = claim.build.logOffset;
      for (const chunk of simLogChunks(id)) {
        if (this.freezeRequested || this.stopped) break;
        const answer = await this.expectOk(ROUTES.appendLog.method, pathOf(ROUTES.appendLog, { id }), { lease, offset, data: chunk });
        offset += Buffer.byteLength(chunk);
        if (answer.logBytes !== offset) throw new Error(`${this.id}: build ${id}: logBytes ${answer.logBytes} after a chunk ending at ${offset}`);
        // A moment of "work" between chunks, so that builds are in flight when a controller dies.
        await new Promise((r) => setTimeout(r, 5 + Math.random() * 15));
      }
      if (this.freezeRequested) {
        // Once: the builds after this one run as usual.
        this.freezeRequested = false;
        this.frozenBuildId = id;
        beating = false;
        await this.waitUntilFailed(id);
        return;
      }
      if (this.stopped) return;
      if (beatError) throw beatError;
      await this.expectOk(ROUTES.complete.method, pathOf(ROUTES.complete, { id }), { lease, status: 'succeeded', exitCode: 0 });
      this.o.onComplete(id, this.url);
    } finally {
      clearInterval(timer);
    }
  }

  /** Frozen: worker heartbeats go on listing the build until the controller answers "abort it". */
  private async waitUntilFailed(id: string): Promise<void> {
    while (!this.stopped) {
      const res = await this.expectOk(ROUTES.workerHeartbeat.method, pathOf(ROUTES.workerHeartbeat, { id: this.id }), { runningBuilds: [id] });
      if ((res.abort as string[]).includes(id)) return;
      await new Promise((r) => setTimeout(r, this.o.heartbeatTimeoutMs / 4));
    }
  }
}
