/**
 * A runner whose real one is built only when it runs: the daemon needs a runner at once (it is
 * stored for cancels and aborts as the claim arrives), while the code that runs a build is
 * imported at the first claim (build-kit.ts), so an idle agent never loads it.
 *
 * States: `waiting` (the module is loading; an abort or cancel is remembered) → `delegating`
 * (the real runner exists and gets every call, a remembered abort first).
 */
import type { Outcome } from './build-runner.ts';
import type { Runner } from './agent.ts';

type Stop = { kind: 'abort'; reason: 'attempt_over' | 'shutdown'; detail?: string } | { kind: 'cancel' };

export class LazyRunner implements Runner {
  readonly buildId: string;
  private readonly make: () => Promise<Runner>;
  private real: Runner | undefined;
  private stop: Stop | undefined;

  /** `make` loads what the build needs and returns its runner; it is called once, by `run`. */
  constructor(buildId: string, make: () => Promise<Runner>) {
    this.buildId = buildId;
    this.make = make;
  }

  async run(): Promise<Outcome> {
    const real = await this.make();
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
