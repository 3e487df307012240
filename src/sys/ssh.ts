/**
 * SSH, behind the `SshClient` port: connect to a VM, run commands with streamed output, upload
 * files, and learn promptly when the connection dies.
 *
 * Every failure is an `ExpoError` with one of these codes, which callers branch on:
 * - `SSH_REFUSED`: nothing listens on the port (sshd not started yet) — retry briefly.
 * - `SSH_TIMEOUT`: no TCP connection or handshake within the ready timeout, or keepalives went
 *   unanswered on an open connection (the VM froze) — retry briefly, then give up.
 * - `SSH_AUTH_REJECTED`: the user or key is wrong (or the key cannot be parsed) — never retried.
 * - `SSH_HOST_KEY_MISMATCH`: the server's host key differs from the pinned one — never retried.
 * - `SSH_CLOSED`: the connection closed before the operation finished.
 * - `SSH_EXEC_TIMEOUT`: a command ran past its own timeout.
 */
import type { Readable } from 'node:stream';

/**
 * How to check the server's host key. Fingerprints are OpenSSH's `SHA256:<base64, no padding>`.
 * - `pinned`: accept only these fingerprints.
 * - `record`: accept any key and report its fingerprint (trust on first use: the caller pins it
 *   for later connections).
 * - `any`: accept any key (only for a throwaway VM whose key the caller cannot know).
 */
export type HostKeyPolicy =
  | { kind: 'pinned'; fingerprints: readonly string[] }
  | { kind: 'record'; onKey: (fingerprint: string) => void }
  | { kind: 'any' };

/** Options of one connection. */
export interface SshConnectOptions {
  host: string;
  /** Default 22. */
  port?: number;
  username: string;
  /** The private key (PEM/OpenSSH text). Never logged, never put in an error. */
  privateKey: string | Buffer;
  /** Milliseconds allowed for TCP connect + handshake + authentication. Default 20000. */
  readyTimeoutMs?: number;
  /** Milliseconds between keepalive probes on an idle connection; 0 disables. Default 5000. */
  keepaliveIntervalMs?: number;
  /** Unanswered keepalives before the connection is declared dead (`SSH_TIMEOUT`). Default 3. */
  keepaliveCountMax?: number;
  /** Default `{ kind: 'any' }`. */
  hostKey?: HostKeyPolicy;
}

/** Options of one remote command. */
export interface SshExecOptions {
  /** Called with every chunk of stdout as it arrives. */
  onStdout?: (chunk: Buffer) => void;
  /** Called with every chunk of stderr as it arrives. */
  onStderr?: (chunk: Buffer) => void;
  /** Close the channel and reject with `SSH_EXEC_TIMEOUT` after this many ms. Default: none. */
  timeoutMs?: number;
  /** Aborting closes the channel and rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Most bytes of each stream kept in the result (the callbacks still see all). Default 1 MiB. */
  maxCaptureBytes?: number;
  /**
   * Once the command has exited, resolve at most this many ms later even if the channel stays
   * open (something it started in the background still holds its output). Default: wait for
   * the channel to close.
   */
  exitGraceMs?: number;
}

/** How a remote command ended. A non-zero exit is a result, not an error. */
export interface SshExecResult {
  /** The exit status, or null when the command died by a signal or sent none. */
  exitCode: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  durationMs: number;
}

/** Why a connection ended: `error` is absent for a clean close by either side. */
export interface SshCloseInfo {
  error?: Error;
}

/** What to upload: text/bytes, or a local file's contents. */
export type UploadSource = { data: string | Buffer } | { localPath: string };

/** One open connection. */
export interface SshSession {
  /** The server's host key fingerprint (`SHA256:…`). */
  readonly hostKeyFingerprint: string;
  /** Runs `command` through the remote user's shell (quote arguments with {@link shellQuote}). */
  exec(command: string, options?: SshExecOptions): Promise<SshExecResult>;
  /** Writes a file over SFTP and sets its mode (default 0o644). */
  upload(source: UploadSource, remotePath: string, options?: { mode?: number }): Promise<void>;
  /** Opens a remote file for reading over SFTP; the session ends with the stream. */
  openRead(remotePath: string): Promise<{ stream: Readable; sizeBytes: number }>;
  /**
   * Resolves when the connection has ended, with the error that ended it (keepalive timeout →
   * `SSH_TIMEOUT`, reset → `SSH_CLOSED`) or none for a clean close. Never rejects.
   */
  readonly closed: Promise<SshCloseInfo>;
  /** Closes the connection; resolves once closed. Idempotent. */
  close(): Promise<void>;
}

/** The SSH port. */
export interface SshClient {
  /** Connects and authenticates, or rejects with a classified `SSH_*` error. */
  connect(options: SshConnectOptions): Promise<SshSession>;
}

/** Quotes argv for a POSIX shell: each word in single quotes. */
export function shellQuote(argv: readonly string[]): string {
  return argv.map((a) => (/^[A-Za-z0-9_./:=@%+-]+$/.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`)).join(' ');
}

/** Whether `s` is an OpenSSH SHA-256 fingerprint: `SHA256:` + 43 characters of unpadded base64. */
export function isSha256Fingerprint(s: string): boolean {
  return /^SHA256:[A-Za-z0-9+/]{43}$/.test(s);
}
