/**
 * A runner whose real one is built only when it runs: the daemon needs a runner at once (it is
 * stored for cancels and aborts as the claim arrives), while the code that runs a build is
 * imported at the first claim (build-kit.ts), so an idle agent never loads it.
 *
 * States: `waiting` (the module is loading; an abort or cancel is remembered) → `delegating`
 * (the real runner exists and gets every call, a remembered abort first).
 *
 * The claim is acknowledged before the import (`keepAlive`: a beat, awaited briefly, then one per
 * interval until the real runner exists): the real runner's first `preparing` report comes only
 * after the import, and the import blocks the event loop while it compiles (about a second on a
 * loaded 2-core host, measured) — long enough, added to the claim's delivery, for the watchdog to
 * find the still-`assigned` build silent past a short heartbeat timeout and take it back from
 * this worker (the agent then told "attempt over", the build claimed a second time). The beat
 * restarts the build's silence clock as the claim arrives; a freeze longer than the whole
 * heartbeat timeout is still silence.
 */
import type { Outcome } from './build-runner.ts';
import type { Runner } from './agent.ts';

type Stop = { kind: 'abort'; reason: 'attempt_over' | 'shutdown'; detail?: string } | { kind: 'cancel' };

/** How the claim is kept alive while the real runner loads. */
export interface LoadKeepAlive {
  /** ms between two beats (the first goes out at once). */
  everyMs: number;
  /** One beat (the agent's `preparing` report); it handles its own errors and settles once answered. */
  beat: () => Promise<void>;
}

/** How long the first beat may hold the import back: enough to be written and answered, never a stall. */
const FIRST_BEAT_WAIT_MS = 1000;

export class LazyRunner implements Runner {
  readonly buildId: string;
  private readonly make: () => Promise<Runner>;
  private readonly keepAlive: LoadKeepAlive | undefined;
  private real: Runner | undefined;
  private stop: Stop | undefined;

  /** `make` loads what the build needs and returns its runner; it is called once, by `run`. */
  constructor(buildId: string, make: () => Promise<Runner>, keepAlive?: LoadKeepAlive) {
    this.buildId = buildId;
    this.make = make;
    this.keepAlive = keepAlive;
  }

  async run(): Promise<Outcome> {
    const ka = this.keepAlive;
    let timer: NodeJS.Timeout | undefined;
    if (ka !== undefined) {
      // On the wire (and normally answered) before the import takes the event loop.
      let wait: NodeJS.Timeout | undefined;
      await Promise.race([ka.beat(), new Promise<void>((r) => (wait = setTimeout(r, Math.min(ka.everyMs, FIRST_BEAT_WAIT_MS))))]);
      clearTimeout(wait);
      timer = setInterval(() => void (this.stop === undefined && ka.beat()), ka.everyMs);
    }
    let real: Runner;
    try {
      real = await this.make();
    } finally {
      clearInterval(timer);
    }
    this.real = real;
    const stop = this.stop;
    if (stop?.kind === 'abort') real.abort(stop.reason, stop.detail);
    else if (stop?.kind === 'cancel') real.cancel();
    return real.run();
  }

  abort(reason: 'attempt_over' | 'shutdown', detail?: string): boolean {
    if (this.real !== undefined) return this.real.abort(reason, detail);
    if (this.stop !== undefined) return false;
    this.stop = { kind: 'abort', reason, ...(detail === undefined ? {} : { detail }) };
    return true;
  }

  cancel(): boolean {
    if (this.real !== undefined) return this.real.cancel();
    if (this.stop !== undefined) return false;
    this.stop = { kind: 'cancel' };
    return true;
  }
}
