/**
 * A scripted `SshSession`: each expected command is declared up front, in order, with what it
 * answers (a result, or an error thrown); any other command, upload or read fails the test (the
 * fake throws, naming it). Uploads are kept for the test to read.
 */
import { Readable } from 'node:stream';
import type { SshCloseInfo, SshExecOptions, SshExecResult, SshSession, UploadSource } from '../../src/sys/ssh.ts';

export type FakeExecAnswer = Partial<Pick<SshExecResult, 'exitCode' | 'signal' | 'stdout' | 'stderr'>> | { throws: Error };

interface Expectation {
  /** The exact command, or a test of it. */
  command: string | ((command: string) => boolean);
  answer: FakeExecAnswer | ((options: SshExecOptions | undefined) => Promise<FakeExecAnswer>);
}

export class FakeSshSession implements SshSession {
  readonly hostKeyFingerprint = 'SHA256:fake';
  readonly closed: Promise<SshCloseInfo>;
  /** Ends the connection as the server or the network would: `closed` resolves with `info`. */
  readonly closeWith: (info: SshCloseInfo) => void;
  readonly commands: { command: string; options: SshExecOptions | undefined }[] = [];
  readonly uploads: { data: string; remotePath: string; mode: number | undefined }[] = [];
  private readonly expected: Expectation[] = [];
  private uploadsAllowed = 0;
  private readonly reads = new Map<string, string>();

  constructor() {
    let end!: (info: SshCloseInfo) => void;
    this.closed = new Promise((r) => (end = r));
    this.closeWith = end;
  }

  /** Expects `exec(command)` next and answers with `answer` (exit 0, no output, by default). */
  expect(command: Expectation['command'], answer: Expectation['answer'] = {}): this {
    this.expected.push({ command, answer });
    return this;
  }

  /** Allows `count` more uploads. */
  allowUploads(count = 1): this {
    this.uploadsAllowed += count;
    return this;
  }

  /** Serves `contents` for `openRead(remotePath)`. */
  serve(remotePath: string, contents: string): this {
    this.reads.set(remotePath, contents);
    return this;
  }

  /** Throws unless every expected command was run. */
  assertDone(): void {
    if (this.expected.length > 0) throw new Error(`FakeSshSession: expected commands not run: ${JSON.stringify(this.expected.map((e) => String(e.command)))}`);
  }

  async exec(command: string, options?: SshExecOptions): Promise<SshExecResult> {
    this.commands.push({ command, options });
    const next = this.expected.shift();
    const matches = next !== undefined && (typeof next.command === 'string' ? next.command === command : next.command(command));
    if (!matches) throw new Error(`FakeSshSession: unexpected command ${JSON.stringify(command)}; expected ${JSON.stringify(next === undefined ? null : String(next.command))}`);
    const answer = typeof next.answer === 'function' ? await next.answer(options) : next.answer;
    if ('throws' in answer) throw answer.throws;
    const stdout = answer.stdout ?? '';
    if (stdout !== '') options?.onStdout?.(Buffer.from(stdout));
    if (answer.stderr) options?.onStderr?.(Buffer.from(answer.stderr));
    return { exitCode: answer.exitCode === undefined ? 0 : answer.exitCode, signal: answer.signal ?? null, stdout, stderr: answer.stderr ?? '', durationMs: 1 };
  }

  async upload(source: UploadSource, remotePath: string, options?: { mode?: number }): Promise<void> {
    if (this.uploadsAllowed === 0) throw new Error(`FakeSshSession: unexpected upload to ${remotePath}`);
    if (!('data' in source)) throw new Error('FakeSshSession: only data uploads are faked');
    this.uploadsAllowed--;
    this.uploads.push({ data: source.data.toString(), remotePath, mode: options?.mode });
  }

  async openRead(remotePath: string): Promise<{ stream: Readable; sizeBytes: number }> {
    const contents = this.reads.get(remotePath);
    if (contents === undefined) throw new Error(`FakeSshSession: unexpected read of ${remotePath}`);
    return { stream: Readable.from([Buffer.from(contents)]), sizeBytes: Buffer.byteLength(contents) };
  }

  async close(): Promise<void> {}
}
