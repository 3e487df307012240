/**
 * Waiting for a VM's SSH to come up, bounded by `timeoutS`.
 *
 * An IP answering is not SSH being ready — and with a stale DHCP lease the IP may even be
 * another VM's (docs/tart.md §2, `tart ip`). So the host is re-resolved before every attempt
 * and connections are polled: refused, timed out and closed are retried with a short backoff
 * until the deadline; a rejected key or a host-key mismatch ends the wait at once, since waiting
 * cannot fix either. The error thrown says which of these it was.
 */
import pRetry, { AbortError } from 'p-retry';
import { ExpoError, isExpoError, isRetryable } from '../protocol/errors.ts';
import type { SshClient, SshConnectOptions, SshSession } from '../sys/ssh.ts';

export interface SshReadyOptions {
  ssh: SshClient;
  /** Returns the address to try (called before every attempt; e.g. `tart ip NAME`). */
  resolveHost: () => Promise<string>;
  /** Everything but the host. `readyTimeoutMs` is capped by the time left. */
  connect: Omit<SshConnectOptions, 'host'>;
  /** The whole wait, in seconds. */
  timeoutS: number;
  /** Milliseconds before the first retry; doubles up to `maxBackoffMs`. Default 250. */
  minBackoffMs?: number;
  /** Longest pause between attempts, in ms. Default 2000. */
  maxBackoffMs?: number;
  signal?: AbortSignal;
  /** Called after each failed attempt (progress lines). */
  onAttemptFailed?: (error: ExpoError, attempt: number) => void;
}

export interface SshReady {
  session: SshSession;
  host: string;
  attempts: number;
  durationMs: number;
}

/**
 * Retried: what the error table calls retryable among what connecting (`SSH_*`) and resolving
 * the address (`VM_NO_IP`) raise — refused, timed out, closed, no IP yet. Other retryable codes
 * (a VM that exited, a tart call that hung) say the VM is not coming up: waiting longer cannot help.
 */
const retried = (err: unknown): err is ExpoError => isExpoError(err) && isRetryable(err.code) && (err.code.startsWith('SSH_') || err.code === 'VM_NO_IP');

const HINTS: Record<string, string> = {
  SSH_REFUSED: 'connection refused: sshd never started listening (is Remote Login enabled in the image?)',
  SSH_TIMEOUT: 'timed out: the VM never answered SSH (frozen, still booting, or the IP is wrong)',
  SSH_CLOSED: 'the server kept closing the connection',
  VM_NO_IP: 'the VM never got an IP address',
};

/** Connects once SSH is ready, or throws a classified `SSH_*` (or `VM_NO_IP`) error. */
export async function waitForSsh(options: SshReadyOptions): Promise<SshReady> {
  const started = performance.now();
  const deadline = started + options.timeoutS * 1000;
  let attempts = 0;
  let host = '';
  const connectTimeoutMs = options.connect.readyTimeoutMs ?? 10_000;
  try {
    const session = await pRetry(
      async () => {
        attempts++;
        try {
          host = await options.resolveHost();
          const left = Math.max(100, deadline - performance.now());
          return await options.ssh.connect({ ...options.connect, host, readyTimeoutMs: Math.min(connectTimeoutMs, left) });
        } catch (err) {
          if (retried(err)) throw err;
          throw new AbortError(err instanceof Error ? err : new Error(String(err)));
        }
      },
      {
        retries: Number.POSITIVE_INFINITY,
        minTimeout: options.minBackoffMs ?? 250,
        maxTimeout: options.maxBackoffMs ?? 2000,
        factor: 2,
        maxRetryTime: options.timeoutS * 1000,
        signal: options.signal,
        onFailedAttempt: ({ error, attemptNumber }) => {
          if (isExpoError(error)) options.onAttemptFailed?.(error, attemptNumber);
        },
      },
    );
    return { session, host, attempts, durationMs: Math.round(performance.now() - started) };
  } catch (err) {
    if (options.signal?.aborted) throw err;
    if (retried(err)) {
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      throw new ExpoError(err.code, `SSH not ready after ${seconds} s and ${attempts} attempts — ${HINTS[err.code] ?? err.message} (last: ${err.message})`, {
        cause: err,
        details: { ...err.details, attempts, host },
      });
    }
    throw err;
  }
}
