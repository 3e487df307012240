/**
 * The `SshClient` adapter on the `ssh2` package.
 *
 * Errors are classified from what ssh2 reports: the socket's errno (`ECONNREFUSED` → refused;
 * `ETIMEDOUT`, `EHOSTUNREACH`… → timeout), ssh2's `level` (`client-timeout` for the ready timeout
 * and for keepalives, `client-authentication` for rejected keys), and our own host-key verifier
 * (a flag set when it refuses a key, so a mismatch is never mistaken for a protocol error).
 */
import type { Readable } from 'node:stream';
import { createHash } from 'node:crypto';
import { Client, type ClientChannel, type ConnectConfig, type SFTPWrapper } from 'ssh2';
import { ExpoError, type ErrorCode } from '../protocol/errors.ts';
import type {
  SshClient,
  SshCloseInfo,
  SshConnectOptions,
  SshExecOptions,
  SshExecResult,
  SshSession,
  UploadSource,
} from './ssh.ts';

/** Details of every `SSH_*` error. Never carries key material. */
export interface SshErrorDetails {
  host: string;
  port: number;
  username?: string;
  command?: string;
  /** The underlying errno or ssh2 error level, when known. */
  reason?: string;
  /** The fingerprint the server presented (host-key mismatch). */
  fingerprint?: string;
  /** The pinned fingerprints it was checked against (host-key mismatch). */
  expectedFingerprints?: string[];
}

const DEFAULT_READY_TIMEOUT_MS = 20_000;
const DEFAULT_KEEPALIVE_INTERVAL_MS = 5000;
const DEFAULT_KEEPALIVE_COUNT_MAX = 3;
const DEFAULT_MAX_CAPTURE_BYTES = 1024 * 1024;
const CLOSE_GRACE_MS = 1000;
const UNREACHABLE = new Set(['ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN']);
const RESET = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED']);

/** OpenSSH's fingerprint format: `SHA256:` + unpadded base64 of the key blob's SHA-256. */
export function fingerprintOf(keyBlob: Buffer): string {
  return `SHA256:${createHash('sha256').update(keyBlob).digest('base64').replace(/=+$/, '')}`;
}

type SshError = Error & { code?: string; level?: string };

function classify(err: SshError, where: string, details: SshErrorDetails, hostKeyRefused: boolean): ExpoError<SshErrorDetails> {
  const reason = err.code ?? err.level ?? 'unknown';
  const make = (code: ErrorCode, message: string): ExpoError<SshErrorDetails> =>
    new ExpoError(code, message, { cause: err, details: { ...details, reason } });
  if (hostKeyRefused) {
    const expected = details.expectedFingerprints ?? [];
    return make(
      'SSH_HOST_KEY_MISMATCH',
      `${where}: the server answered with host key ${details.fingerprint ?? '?'}, not the pinned ${expected.join(' or ')}; refused before authenticating`,
    );
  }
  if (err.code === 'ECONNREFUSED') return make('SSH_REFUSED', `${where}: connection refused (sshd not listening)`);
  if (err.code !== undefined && UNREACHABLE.has(err.code)) return make('SSH_TIMEOUT', `${where}: unreachable (${err.code})`);
  if (err.level === 'client-timeout') {
    return err.message.includes('Keepalive')
      ? make('SSH_TIMEOUT', `${where}: keepalives unanswered, the server stopped responding`)
      : make('SSH_TIMEOUT', `${where}: timed out waiting for the SSH handshake`);
  }
  if (err.level === 'client-authentication') {
    return make('SSH_AUTH_REJECTED', `${where}: authentication rejected for user ${details.username ?? '?'}`);
  }
  if (err.code !== undefined && RESET.has(err.code)) return make('SSH_CLOSED', `${where}: connection reset (${err.code})`);
  return make('SSH_CLOSED', `${where}: ${err.message}`);
}

export class Ssh2Client implements SshClient {
  connect(options: SshConnectOptions): Promise<SshSession> {
    const port = options.port ?? 22;
    const where = `ssh ${options.username}@${options.host}:${port}`;
    const details: SshErrorDetails = { host: options.host, port, username: options.username };
    const policy = options.hostKey ?? { kind: 'any' };
    let fingerprint = '';
    let hostKeyRefused = false;
    const client = new Client();
    const config: ConnectConfig = {
      host: options.host,
      port,
      username: options.username,
      privateKey: options.privateKey,
      readyTimeout: options.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS,
      keepaliveInterval: options.keepaliveIntervalMs ?? DEFAULT_KEEPALIVE_INTERVAL_MS,
      keepaliveCountMax: options.keepaliveCountMax ?? DEFAULT_KEEPALIVE_COUNT_MAX,
      // Never fall back to an agent or keyboard-interactive: a wrong key must fail at once.
      tryKeyboard: false,
      hostVerifier: (key: Buffer) => {
        fingerprint = fingerprintOf(key);
        details.fingerprint = fingerprint;
        if (policy.kind === 'pinned' && !policy.fingerprints.includes(fingerprint)) {
          hostKeyRefused = true;
          details.expectedFingerprints = [...policy.fingerprints];
          return false;
        }
        return true;
      },
    };
    return new Promise<SshSession>((resolve, reject) => {
      let ready = false;
      let lastError: Error | undefined;
      let resolveClosed: (info: SshCloseInfo) => void = () => {};
      const closed = new Promise<SshCloseInfo>((r) => (resolveClosed = r));
      client.on('error', (err: SshError) => {
        const classified = classify(err, where, details, hostKeyRefused);
        if (!ready) {
          client.destroy();
          reject(classified);
        } else {
          lastError ??= classified;
        }
      });
      client.on('close', () => {
        if (!ready) {
          reject(classify(Object.assign(new Error('connection closed during handshake'), { code: 'ECONNRESET' }), where, details, hostKeyRefused));
        }
        resolveClosed(lastError === undefined ? {} : { error: lastError });
      });
      client.on('ready', () => {
        ready = true;
        if (policy.kind === 'record') policy.onKey(fingerprint);
        resolve(new Ssh2Session(client, fingerprint, closed, where, details, () => lastError));
      });
      try {
        client.connect(config);
      } catch (err) {
        // ssh2 throws synchronously for a key it cannot parse; say so without echoing the key.
        reject(
          new ExpoError('SSH_AUTH_REJECTED', `${where}: the private key cannot be parsed (${(err as Error).message.replace(/:.*$/s, '')})`, {
            details: { ...details, reason: 'bad-private-key' },
          }),
        );
      }
    });
  }
}

class Ssh2Session implements SshSession {
  private ended = false;
  private readonly client: Client;
  readonly hostKeyFingerprint: string;
  readonly closed: Promise<SshCloseInfo>;
  private readonly where: string;
  private readonly details: SshErrorDetails;
  private readonly connectionError: () => Error | undefined;

  constructor(
    client: Client,
    hostKeyFingerprint: string,
    closed: Promise<SshCloseInfo>,
    where: string,
    details: SshErrorDetails,
    connectionError: () => Error | undefined,
  ) {
    this.client = client;
    this.hostKeyFingerprint = hostKeyFingerprint;
    this.closed = closed;
    this.where = where;
    this.details = details;
    this.connectionError = connectionError;
    void closed.then(() => (this.ended = true));
  }

  private closedError(what: string): Error {
    return (
      this.connectionError() ??
      new ExpoError('SSH_CLOSED', `${this.where}: connection closed ${what}`, { details: this.details })
    );
  }

  exec(command: string, options: SshExecOptions = {}): Promise<SshExecResult> {
    const started = performance.now();
    const cap = options.maxCaptureBytes ?? DEFAULT_MAX_CAPTURE_BYTES;
    return new Promise<SshExecResult>((resolve, reject) => {
      if (options.signal?.aborted) return reject(options.signal.reason);
      if (this.ended) return reject(this.closedError('before exec'));
      let settled = false;
      let channel: ClientChannel | undefined;
      const finish = (fn: () => void): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
        fn();
      };
      const stopChannel = (): void => {
        try {
          channel?.signal('KILL');
          channel?.close();
        } catch {
          // the channel is already gone
        }
      };
      const timer =
        options.timeoutMs === undefined
          ? undefined
          : setTimeout(() => {
              stopChannel();
              finish(() =>
                reject(
                  new ExpoError('SSH_EXEC_TIMEOUT', `${this.where}: command timed out after ${options.timeoutMs} ms`, {
                    details: { ...this.details, command },
                  }),
                ),
              );
            }, options.timeoutMs);
      const onAbort = (): void => {
        stopChannel();
        finish(() => reject(options.signal?.reason));
      };
      options.signal?.addEventListener('abort', onAbort, { once: true });
      void this.closed.then(() => finish(() => reject(this.closedError('during exec'))));
      try {
        this.client.exec(command, (err, stream) => {
          if (err) return finish(() => reject(this.closedError(`opening a channel (${err.message})`)));
          channel = stream;
          if (settled) return stopChannel();
          const out: Buffer[] = [];
          const errs: Buffer[] = [];
          let outBytes = 0;
          let errBytes = 0;
          let exitCode: number | null = null;
          let exitSignal: string | null = null;
          let gotExit = false;
          stream.on('data', (c: Buffer) => {
            options.onStdout?.(c);
            if (outBytes < cap) {
              out.push(c);
              outBytes += c.length;
            }
          });
          stream.stderr.on('data', (c: Buffer) => {
            options.onStderr?.(c);
            if (errBytes < cap) {
              errs.push(c);
              errBytes += c.length;
            }
          });
          const settle = (): void =>
            finish(() =>
              resolve({
                exitCode,
                signal: exitSignal,
                stdout: Buffer.concat(out).toString('utf8'),
                stderr: Buffer.concat(errs).toString('utf8'),
                durationMs: performance.now() - started,
              }),
            );
          stream.on('exit', (code: number | null, signal?: string) => {
            gotExit = true;
            exitCode = code ?? null;
            exitSignal = signal ?? null;
            // sshd keeps the channel open while anything the command started still holds its
            // stdout (a server left in the background): the command is over, so stop waiting.
            if (options.exitGraceMs !== undefined) {
              const t = setTimeout(() => {
                settle();
                try {
                  stream.close();
                } catch {
                  // already closed
                }
              }, options.exitGraceMs);
              stream.once('close', () => clearTimeout(t));
            }
          });
          stream.on('close', () => {
            // A channel closed by a dying connection never sent an exit status: that is a failure.
            const dead = this.connectionError();
            if (!gotExit && dead !== undefined) return finish(() => reject(dead));
            settle();
          });
        });
      } catch (err) {
        finish(() => reject(this.closedError(`(${(err as Error).message})`)));
      }
    });
  }

  upload(source: UploadSource, remotePath: string, options: { mode?: number } = {}): Promise<void> {
    const mode = options.mode ?? 0o644;
    return new Promise<void>((resolve, reject) => {
      if (this.ended) return reject(this.closedError('before upload'));
      const fail = (sftp: SFTPWrapper | undefined, e: Error): void => {
        sftp?.end();
        reject(
          this.connectionError() ??
            new ExpoError('SSH_CLOSED', `${this.where}: upload to ${remotePath} failed: ${e.message}`, {
              cause: e,
              details: this.details,
            }),
        );
      };
      this.client.sftp((err, sftp) => {
        if (err) return fail(undefined, err);
        const written = (e: Error | null | undefined): void => {
          if (e) return fail(sftp, e);
          // The mode given at open applies only to new files; set it explicitly.
          sftp.chmod(remotePath, mode, (e2) => {
            if (e2) return fail(sftp, e2);
            sftp.end();
            resolve();
          });
        };
        if ('data' in source) sftp.writeFile(remotePath, source.data, { mode }, written);
        else sftp.fastPut(source.localPath, remotePath, { mode }, written);
      });
    });
  }

  openRead(remotePath: string): Promise<{ stream: Readable; sizeBytes: number }> {
    return new Promise((resolve, reject) => {
      if (this.ended) return reject(this.closedError('before download'));
      const fail = (sftp: SFTPWrapper | undefined, e: Error): void => {
        sftp?.end();
        reject(
          this.connectionError() ??
            new ExpoError('SSH_CLOSED', `${this.where}: reading ${remotePath} failed: ${e.message}`, { cause: e, details: this.details }),
        );
      };
      this.client.sftp((err, sftp) => {
        if (err) return fail(undefined, err);
        sftp.stat(remotePath, (e, stats) => {
          if (e) return fail(sftp, e);
          const stream = sftp.createReadStream(remotePath);
          // The SFTP session lives as long as the stream.
          stream.once('close', () => sftp.end());
          stream.once('error', () => sftp.end());
          resolve({ stream, sizeBytes: stats.size });
        });
      });
    });
  }

  async close(): Promise<void> {
    if (!this.ended) {
      this.client.end();
      // A frozen server never completes the close handshake: drop the socket after a moment.
      const timer = setTimeout(() => this.client.destroy(), CLOSE_GRACE_MS);
      await this.closed;
      clearTimeout(timer);
    }
    await this.closed;
  }
}
