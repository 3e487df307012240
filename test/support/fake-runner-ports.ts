/**
 * Fakes of the build runner's ports (src/agent/runner-ports.ts). Each records what it was asked
 * and refuses what the test did not set up: a method without an answer throws, naming itself,
 * so a runner that does something unexpected fails the test on the spot.
 */
import type { Readable } from 'node:stream';
import pino, { type Logger } from 'pino';
import type { RawBody, RetryOptions } from '../../src/agent/controller-client.ts';
import type { LogStreamOptions } from '../../src/agent/log-stream.ts';
import type { BuildVm, RunnerClient, RunnerLog, RunnerWorkspace } from '../../src/agent/runner-ports.ts';
import type { CheckoutSpec } from '../../src/agent/checkout.ts';
import type { CompleteBody } from '../../src/protocol/schemas.ts';
import type { VmExit } from '../../src/vm/vm-driver.ts';
import { FakeSshSession } from './fake-ssh-session.ts';

export interface Deferred<T> {
  promise: Promise<T>;
  resolve: (v: T) => void;
  reject: (e: unknown) => void;
}

export function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

const refuse = (what: string) => (): never => {
  throw new Error(`unexpected call: ${what}`);
};

/** Resolves never, or rejects with the signal's reason once it aborts: a call in flight. */
export function pendingUntilAborted<T>(signal: AbortSignal | undefined): Promise<T> {
  return new Promise((_, reject) => {
    if (signal?.aborted) reject(signal.reason);
    signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
}

export class FakeRunnerClient implements RunnerClient {
  /** Every call in order: `phase preparing`, `upload out/a.txt`, `complete failed`. */
  readonly calls: string[] = [];
  readonly completions: CompleteBody[] = [];
  readonly phaseOptions: (RetryOptions | undefined)[] = [];
  /** Step starts reported, by index, in order; kept apart from `calls` since they are not awaited. */
  readonly stepStarts: number[] = [];
  /** Answers a step start; default: accepted. */
  onStepStarted: (index: number, r?: RetryOptions) => Promise<void> = async () => undefined;
  /** Answers a phase update; default: accepted. */
  onPhase: (phase: 'preparing' | 'running', r?: RetryOptions) => Promise<void> = async () => undefined;
  /** Answers a completion; default: accepted, answering its status. */
  onComplete: (body: CompleteBody, r?: RetryOptions) => Promise<{ status: string }> = async (b) => ({ status: b.status });
  /** Answers a clone token request; default: refused as unexpected. */
  onCheckoutToken: (r?: RetryOptions) => Promise<{ token: string | null; expiresAt: string | null }> = refuse('checkoutToken');
  /** Answers an artifact upload; default: refused as unexpected. */
  onUpload: (name: string, body: RawBody) => Promise<{ sizeBytes: number; sha256: string }> = refuse('uploadArtifact');

  phase(_buildId: string, _lease: string, phase: 'preparing' | 'running', r?: RetryOptions): Promise<void> {
    this.calls.push(`phase ${phase}`);
    this.phaseOptions.push(r);
    return this.onPhase(phase, r);
  }

  stepStarted(_buildId: string, _lease: string, index: number, r?: RetryOptions): Promise<void> {
    this.stepStarts.push(index);
    return this.onStepStarted(index, r);
  }

  checkoutToken(_buildId: string, _lease: string, r?: RetryOptions): Promise<{ token: string | null; expiresAt: string | null }> {
    this.calls.push('checkoutToken');
    return this.onCheckoutToken(r);
  }

  appendLog(): Promise<number> {
    throw new Error('unexpected call: appendLog (the runner sends its log through the log port)');
  }

  uploadArtifact(_buildId: string, _lease: string, name: string, body: RawBody): Promise<{ sizeBytes: number; sha256: string }> {
    this.calls.push(`upload ${name}`);
    return this.onUpload(name, body);
  }

  complete(_buildId: string, body: CompleteBody, r?: RetryOptions): Promise<{ status: string }> {
    this.calls.push(`complete ${body.status}`);
    this.completions.push(body);
    return this.onComplete(body, r);
  }
}

export class FakeRunnerLog implements RunnerLog {
  text = '';
  options: LogStreamOptions | undefined;
  /** Values added to the masked ones during the attempt. */
  readonly addedSecrets: string[] = [];
  readonly closes: number[] = [];
  /** Answers `close`; default: everything delivered. */
  onClose: (deadline: number) => Promise<boolean> = async () => true;

  append(text: string): void {
    if (this.closes.length > 0) throw new Error(`unexpected call: append after close (${JSON.stringify(text)})`);
    this.text += text;
  }

  addSecrets(values: readonly string[]): void {
    this.addedSecrets.push(...values);
  }

  close(deadline: number): Promise<boolean> {
    this.closes.push(deadline);
    return this.onClose(deadline);
  }

  /** The `[expo-worker]` lines the runner wrote, without the prefix. */
  notes(): string[] {
    return this.text
      .split('\n')
      .filter((l) => l.startsWith('[expo-worker] '))
      .map((l) => l.slice('[expo-worker] '.length));
  }
}

type Io = { onOutput: (chunk: Buffer) => void; signal?: AbortSignal };

export class FakeWorkspace implements RunnerWorkspace {
  /** Every call in order: `startMonitor`, `runStep 0 50`, `stopStep 10000`, `writeProgress 100`… */
  readonly calls: string[] = [];
  onStartMonitor: (note: (line: string) => void) => Promise<number> = refuse('startMonitor');
  onStopMonitor: () => Promise<void> = refuse('stopMonitor');
  onRunStep: (index: number, io: Io) => Promise<number | null> = refuse('runStep');
  onStopStep: (graceMs: number) => Promise<void> = refuse('stopStep');
  onWriteProgress: (percent: number) => Promise<void> = refuse('writeProgress');
  onFindArtifacts: (patterns: readonly string[]) => Promise<Map<string, string[]>> = refuse('findArtifacts');
  onOpenArtifact: (path: string) => Promise<{ stream: Readable; sizeBytes: number }> = refuse('openArtifact');
  onAlive: (timeoutMs: number) => Promise<boolean> = refuse('alive');
  onCheckout: (spec: CheckoutSpec, credential: string | null, io: Io) => Promise<number | null> = refuse('checkout');

  /** The answers of a healthy VM: the monitor starts and stops, each step exits 0, progress is written. */
  healthy(): this {
    this.onStartMonitor = async () => 4321;
    this.onStopMonitor = async () => undefined;
    this.onRunStep = async () => 0;
    this.onWriteProgress = async () => undefined;
    return this;
  }

  startMonitor(note: (line: string) => void): Promise<number> {
    this.calls.push('startMonitor');
    return this.onStartMonitor(note);
  }
  stopMonitor(): Promise<void> {
    this.calls.push('stopMonitor');
    return this.onStopMonitor();
  }
  runStep(index: number, progress: number, io: Io): Promise<number | null> {
    this.calls.push(`runStep ${index} ${progress}`);
    return this.onRunStep(index, io);
  }
  stopStep(graceMs: number): Promise<void> {
    this.calls.push(`stopStep ${graceMs}`);
    return this.onStopStep(graceMs);
  }
  writeProgress(percent: number): Promise<void> {
    this.calls.push(`writeProgress ${percent}`);
    return this.onWriteProgress(percent);
  }
  findArtifacts(patterns: readonly string[]): Promise<Map<string, string[]>> {
    this.calls.push(`findArtifacts ${patterns.join(' ')}`);
    return this.onFindArtifacts(patterns);
  }
  openArtifact(path: string): Promise<{ stream: Readable; sizeBytes: number }> {
    this.calls.push(`openArtifact ${path}`);
    return this.onOpenArtifact(path);
  }
  checkout(spec: CheckoutSpec, credential: string | null, io: Io): Promise<number | null> {
    this.calls.push(`checkout ${spec.sha.slice(0, 12)}`);
    return this.onCheckout(spec, credential, io);
  }
  alive(timeoutMs: number): Promise<boolean> {
    this.calls.push(`alive ${timeoutMs}`);
    return this.onAlive(timeoutMs);
  }
}

/** A healthy VM until the test makes `tart run` exit or the SSH connection drop. */
export class FakeBuildVm implements BuildVm {
  readonly name = 'expo-worker-w1-b1-1';
  readonly ip = '192.168.64.7';
  readonly session = new FakeSshSession();
  private readonly exit = deferred<VmExit>();
  readonly exited = this.exit.promise;
  readonly releases: { removeLog?: boolean }[] = [];
  /** Answers `release`; default: deleted. */
  onRelease: () => Promise<void> = async () => undefined;

  /** `tart run` exits. */
  crash(code = 1, logTail = 'booting\nguest has stopped the virtual machine\n'): void {
    this.exit.resolve({ code, signal: null, logTail, error: null });
  }

  release(options?: { removeLog?: boolean }): Promise<void> {
    this.releases.push(options ?? {});
    return this.onRelease();
  }
}

/** A pino logger writing JSON lines into `lines`, synchronously. */
export function captureLogger(): { log: Logger; lines: { level: number; msg: string; [k: string]: unknown }[] } {
  const lines: { level: number; msg: string }[] = [];
  const sink = { write: (line: string) => void lines.push(JSON.parse(line)) };
  return { log: pino({ level: 'debug' }, sink), lines };
}
