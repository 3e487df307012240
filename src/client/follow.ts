/**
 * Following a build: its live log stream (`GET …/logs/stream`, Server-Sent Events) to stdout,
 * byte for byte, and its status changes to stderr, until the stream's `end` (the build is final
 * and the whole log is out).
 *
 * A dropped connection (the network, a controller restarting, a stream bound reached, a stream
 * that lived its hour or whose reader fell behind) is
 * reconnected with `Last-Event-ID`, the byte offset after the last chunk printed, so nothing is
 * printed twice or lost; each reconnect is announced on stderr, waits grow from
 * `followReconnectMs` to 5 s, and after `followGiveUpMs` without a connection the follow gives
 * up as an unreachable controller (exit 69). The first connection is retried only when the
 * controller itself says to try later: a wrong URL or key is said at once, as by every other command.
 */
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { answerErrorCode, ExpoError, isExpoError, isRetryable } from '../protocol/errors.ts';
import type { BuildView } from '../protocol/schemas.ts';
import type { AdminApi } from './admin-api.ts';

/**
 * The output and pacing `follow` needs, declared here rather than taken from the commands' whole
 * `CliIo` (which `commands.ts` passes as it is): the commands import `follow`, so follow
 * importing the commands back would be a cycle, if a type-only one.
 */
export interface FollowIo {
  stdout: (text: string | Uint8Array) => void;
  stderr: (text: string) => void;
  /** The first wait before reconnecting a dropped stream, ms; it doubles up to 5 s. Default 500. */
  followReconnectMs?: number;
  /**
   * How long to keep reconnecting without getting a connection, ms. Default 30 000: the client's
   * timeout for a controller that does not answer (`AdminApi`).
   */
  followGiveUpMs?: number;
}

const MAX_RECONNECT_WAIT_MS = 5000;

/** A `status` event's data. */
interface StatusData {
  status: string;
  progress: number | null;
  workerId: string | null;
  attempt: number;
  maxAttempts: number;
}

const statusLine = (s: StatusData): string =>
  `${s.status}${s.progress === null ? '' : ` ${s.progress}%`}${s.workerId ? ` on ${s.workerId}` : ''}${s.attempt > 1 ? ` (attempt ${s.attempt} of ${s.maxAttempts})` : ''}`;

/**
 * Whether a failure of the stream is worth a reconnect. Once the stream has been had: the
 * connection breaking (any error that is not an answer), the controller out of reach, or an
 * answer that says try later (the controller's own retryable codes, and a proxy's 5xx while the
 * controller restarts). Before that, only the controller's own "try later" (its stream bound
 * reached, a controller stopping): a wrong URL or a dead proxy is said at once.
 */
function isDrop(err: unknown, connectedBefore: boolean): boolean {
  if (!isExpoError(err)) return connectedBefore;
  if (err.code === 'HTTP_UNREACHABLE') return connectedBefore;
  const { status, code } = err.details as { status?: number; code?: string };
  if (!connectedBefore) return isRetryable(code);
  return status !== undefined && isRetryable(answerErrorCode(status, code === undefined ? undefined : { code }));
}

/** Streams the log to stdout and status changes to stderr; resolves with the final build. */
export async function follow(api: Pick<AdminApi, 'logStream' | 'build' | 'url'>, id: string, io: FollowIo): Promise<BuildView> {
  const firstWaitMs = io.followReconnectMs ?? 500;
  const giveUpMs = io.followGiveUpMs ?? 30_000;
  let lastId: string | undefined;
  let shown = '';
  let connected = false;
  let failingSince: number | null = null;
  let waitMs = firstWaitMs;
  let ended = false;
  const onEvent = (e: EventSourceMessage) => {
    // The stream is flowing: a later drop starts a fresh round of waits.
    failingSince = null;
    waitMs = firstWaitMs;
    switch (e.event) {
      case 'log':
        io.stdout(JSON.parse(e.data) as string);
        lastId = e.id;
        return;
      case 'status': {
        const line = statusLine(JSON.parse(e.data) as StatusData);
        if (line !== shown) io.stderr(`[expo-worker] build ${id}: ${line}\n`);
        shown = line;
        return;
      }
      case 'end':
        ended = true;
        return;
      default:
        // `start`, and whatever a later controller adds: nothing to show.
        return;
    }
  };
  while (!ended) {
    let why: string;
    try {
      const body = await api.logStream(id, lastId);
      connected = true;
      const parser = createParser({ onEvent });
      const decoder = new TextDecoder();
      for await (const chunk of body) {
        parser.feed(decoder.decode(chunk, { stream: true }));
        if (ended) break;
      }
      body.destroy();
      if (ended) break;
      why = 'the controller ended the stream before the build ended';
    } catch (err) {
      if (!isDrop(err, connected)) throw err;
      why = (err as Error).message;
    }
    failingSince ??= Date.now();
    if (Date.now() - failingSince >= giveUpMs) {
      throw new ExpoError('HTTP_UNREACHABLE', `lost the log stream of build ${id} at ${api.url} and could not get it back within ${Math.round(giveUpMs / 1000)} s: ${why}`);
    }
    io.stderr(`[expo-worker] build ${id}: log stream lost (${why}); reconnecting from byte ${lastId ?? 0} in ${(waitMs / 1000).toFixed(1)} s\n`);
    await new Promise((r) => setTimeout(r, waitMs));
    waitMs = Math.min(waitMs * 2, MAX_RECONNECT_WAIT_MS);
  }
  // The final record, for what the stream does not carry: the step's exit code.
  const build = await api.build(id);
  // The step's own exit code is printed, not returned: it could be any number (see exit-codes.ts).
  const exit = build.exitCode === null ? '' : ` (step exit code ${build.exitCode})`;
  if (build.failureReason) io.stderr(`[expo-worker] build ${id} failed: ${build.failureReason}${build.message ? ` — ${build.message}` : ''}${exit}\n`);
  else if (build.status === 'cancelled') io.stderr(`[expo-worker] build ${id} was cancelled\n`);
  return build;
}
