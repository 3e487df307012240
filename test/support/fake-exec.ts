/**
 * A scripted `Exec`: each expected call is declared up front with its argv and outcome; any
 * other call fails the test (the fake throws, naming the unexpected argv).
 */
import { ExpoError } from '../../src/protocol/errors.ts';
import type { ChildHandle, Exec, ExecOptions, ExecResult, ExitStatus, StartOptions } from '../../src/sys/exec.ts';

export type FakeOutcome =
  | { stdout?: string; stderr?: string }
  | { exitCode: number; stderr?: string; stdout?: string }
  | { timeout: true }
  | { spawnError: string };

interface Expectation {
  argv: readonly string[];
  outcome: FakeOutcome;
}

export interface FakeCall {
  argv: readonly string[];
  options: ExecOptions | StartOptions | undefined;
}

export class FakeExec implements Exec {
  readonly calls: FakeCall[] = [];
  private readonly expected: Expectation[] = [];
  private readonly starts: { argv: readonly string[]; exit: Promise<ExitStatus> }[] = [];

  /** Expects `run(argv)` next (in order) and answers with `outcome`. */
  expect(argv: readonly string[], outcome: FakeOutcome = {}): this {
    this.expected.push({ argv, outcome });
    return this;
  }

  /** Expects `start(argv)`; the child "exits" when `exit` resolves. */
  expectStart(argv: readonly string[], exit: Promise<ExitStatus>): this {
    this.starts.push({ argv, exit });
    return this;
  }

  /** Throws unless every expected call was made. */
  assertDone(): void {
    if (this.expected.length > 0 || this.starts.length > 0) {
      throw new Error(`FakeExec: expected calls not made: ${JSON.stringify([...this.expected, ...this.starts].map((e) => e.argv))}`);
    }
  }

  private take<T extends { argv: readonly string[] }>(queue: T[], argv: readonly string[]): T {
    const next = queue.shift();
    if (next === undefined || JSON.stringify(next.argv) !== JSON.stringify(argv)) {
      throw new Error(`FakeExec: unexpected call ${JSON.stringify(argv)}; expected ${JSON.stringify(next?.argv ?? null)}`);
    }
    return next;
  }

  async run(argv: readonly string[], options?: ExecOptions): Promise<ExecResult> {
    this.calls.push({ argv, options });
    const { outcome } = this.take(this.expected, argv);
    const base = { argv, signal: null, stdoutTail: '', stderrTail: '' };
    if ('spawnError' in outcome) {
      throw new ExpoError('EXEC_SPAWN', `cannot start ${argv[0]}`, { details: { ...base, exitCode: null, errno: outcome.spawnError } });
    }
    if ('timeout' in outcome) {
      throw new ExpoError('EXEC_TIMEOUT', 'timed out', { details: { ...base, exitCode: null, signal: 'SIGTERM', timeoutMs: options?.timeoutMs } });
    }
    if ('exitCode' in outcome && outcome.exitCode !== 0) {
      throw new ExpoError('EXEC_FAILED', `exited ${outcome.exitCode}`, {
        details: { ...base, exitCode: outcome.exitCode, stderrTail: outcome.stderr ?? '', stdoutTail: outcome.stdout ?? '' },
      });
    }
    return { stdout: outcome.stdout ?? '', stderr: outcome.stderr ?? '', durationMs: 1 };
  }

  async start(argv: readonly string[], options: StartOptions): Promise<ChildHandle> {
    this.calls.push({ argv, options });
    const { exit } = this.take(this.starts, argv);
    let status: ExitStatus | null = null;
    const exited = exit.then((s) => (status = s));
    return { pid: 4242, exited, exitStatus: () => status, kill: () => {} };
  }
}
