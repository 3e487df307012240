/**
 * `GET /api/v1/builds/:id/logs/stream`: a build's log and status as Server-Sent Events, live.
 *
 * A stream's life: it opens (404 JSON for an unknown build and 503 LOG_STREAMS_BUSY at the
 * bound, in all or for this caller, before any stream byte), sends `retry`, `start` and the
 * first `status`, then loops — read the build, send a `status` when it changed, send the
 * stored bytes not yet sent as `log` events (at most 64 KiB each, cut on UTF-8 character
 * boundaries, `id:` the byte offset after the chunk), then wait for a wake-up: the notifier
 * (this controller changed the build), the recheck timer (another controller on the same
 * database did), a ping due, or the client leaving. It ends with `end` once the build is final
 * and every stored byte was sent (or the build was pruned), when the client goes, or when the
 * controller stops (without `end`: the client reconnects with `Last-Event-ID`, to this
 * controller restarted or to another).
 *
 * No caller holds a place forever (the slots are few, and a leaked viewer token must not take
 * them all): each caller (an API token, a signed-in user, the admin key) has a share of the
 * bound; a stream ends without `end` after its maximum life (the client reconnects and resumes,
 * so a live caller loses nothing) and when its caller's credential stops resolving (checked at
 * each recheck: a revoked or expired token, a removed user, an ended session); and a client that
 * does not read is cut once a write has waited past the write deadline.
 *
 * Log data is sent as one JSON string per event: SSE treats a bare `\r` as a line end, so raw
 * bytes would not round-trip; a JSON string does, `\r`, ANSI escapes and all.
 */
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { FastifyBaseLogger, FastifyPluginAsync, FastifyRequest } from 'fastify';
import { ExpoError } from '../../protocol/errors.ts';
import { isFinalStatus } from '../../protocol/domain.ts';
import { ROUTES } from '../../protocol/routes.ts';
import type { Principal } from '../auth.ts';
import { stepTimes } from '../views.ts';
import { route, type App } from '../route.ts';
import type { BuildRecord, Store } from '../store/store.ts';
import type { LogNotifier } from '../log-notifier.ts';
import { leadingContinuations, wholeCharsLength } from '../utf8-cut.ts';

/** The most log bytes one `log` event carries. */
export const MAX_LOG_EVENT_BYTES = 64 * 1024;
/** What a browser waits before reconnecting a dropped stream (the SSE `retry` field), ms. */
const RETRY_MS = 3000;

export interface LogStreamsOptions {
  store: Pick<Store, 'getBuild' | 'readLogRange'>;
  notifier: LogNotifier;
  /** The most streams open at once on this controller; one more is refused with 503 LOG_STREAMS_BUSY. Default 256. */
  maxStreams?: number;
  /** How long a stream may stay silent before a `: ping` comment keeps proxies from closing it, ms. Default 15 000. */
  pingMs?: number;
  /** How often an idle stream reads the build again without a wake-up (another controller may write it), and re-checks its caller's credential, ms. Default 3000. */
  recheckMs?: number;
  /** The most streams one person (a user with their sessions and tokens, or the admin key with its tokens) may have open at once here; one more is refused with 503 LOG_STREAMS_BUSY. Default 32 (CI following many builds with one token). */
  maxPerCaller?: number;
  /** How long one stream may last, ms; it then ends without `end` and its client reconnects with `Last-Event-ID`. Default 3 600 000 (1 h). */
  maxLifeMs?: number;
  /** How long a write may wait for a client that does not read ('drain'), ms; its connection is then cut. Default 60 000. */
  writeDeadlineMs?: number;
  /**
   * Whether the credential `req` came with still resolves to a caller allowed to stream; false
   * ends the stream (without `end`). Asked at most once per recheck. Default: always true.
   */
  stillValid?: (req: FastifyRequest) => Promise<boolean>;
}

/** The stream's caller: who its share of the bound is counted against, and whether its credential still holds. */
export interface StreamCaller {
  key: string;
  stillValid: () => Promise<boolean>;
}

/**
 * Whose share of the bound a stream counts against: a person — the signed-in user with all their
 * sessions and API tokens together (a viewer who makes more tokens gets no more streams), or the
 * admin key with the tokens made with it. Worker keys and build tokens cannot open a stream (the
 * route needs a role).
 */
export function callerKeyOf(p: Principal): string {
  switch (p.kind) {
    case 'admin':
      return 'admin key';
    case 'token':
      return p.token.owner === null ? 'admin key' : `user ${p.token.owner}`;
    case 'session':
      return `user ${p.user.name}`;
    case 'worker':
      return `worker ${p.worker.id}`;
    case 'build':
      return `build ${p.attempt.buildId}`;
  }
}

/** The fields of a `status` event, in this order. */
type StatusData = Pick<BuildRecord, 'status' | 'progress' | 'workerId' | 'attempt' | 'maxAttempts' | 'failureReason' | 'message' | 'cancelRequested'> & {
  /** As on the build (`GET /api/v1/builds/:id`): the build page's step durations follow it. */
  stepTimes: ReturnType<typeof stepTimes>;
};

const statusOf = (b: BuildRecord): StatusData => ({
  status: b.status,
  progress: b.progress,
  workerId: b.workerId,
  attempt: b.attempt,
  maxAttempts: b.maxAttempts,
  failureReason: b.failureReason,
  message: b.message,
  cancelRequested: b.cancelRequested,
  stepTimes: stepTimes(b),
});

/** The open log streams of one controller: their bound, and their end when it stops. */
export class LogStreams {
  private readonly o: Required<LogStreamsOptions>;
  /** Ends each open stream (without `end`: the controller is stopping). */
  private readonly open = new Set<() => void>();
  /** Open streams per caller key (a key with none is removed). */
  private readonly perCaller = new Map<string, number>();

  constructor(options: LogStreamsOptions) {
    this.o = { maxStreams: 256, pingMs: 15_000, recheckMs: 3000, maxPerCaller: 32, maxLifeMs: 3_600_000, writeDeadlineMs: 60_000, stillValid: async () => true, ...options };
  }

  /** The caller of the stream `req` opens (its principal is resolved: the route needs a role). */
  callerOf(req: FastifyRequest): StreamCaller {
    return { key: callerKeyOf(req.principal), stillValid: () => this.o.stillValid(req) };
  }

  /** How many streams are open. */
  get size(): number {
    return this.open.size;
  }

  /** Ends every open stream at once; called before the server closes so it does not wait on them. */
  closeAll(): void {
    for (const stop of [...this.open]) stop();
  }

  /**
   * Where a stream starts, clamped to the stored log (a log never shrinks but by pruning) and
   * moved forward past a partial character: `lastEventId` (all digits) when sent, else
   * `offset`, else the last `tail` bytes from the first line start in them, else 0.
   */
  async startOf(build: BuildRecord, lastEventId: string | undefined, offset: string | undefined, tail: string | undefined): Promise<number> {
    const size = build.logBytes;
    let from: number;
    if (lastEventId !== undefined && /^[0-9]{1,15}$/.test(lastEventId)) from = Number(lastEventId);
    else if (offset !== undefined) from = Number(offset);
    else if (tail !== undefined) from = await this.lineStartIn(build.id, Math.max(0, size - Number(tail)), size);
    else from = 0;
    from = Math.min(from, size);
    if (from === 0 || from === size) return from;
    return from + leadingContinuations(await this.o.store.readLogRange(build.id, from, from + 3));
  }

  /** Just after the first `\n` at or after `from - 1` and before `size`; `from` itself when there is none (or from is 0). */
  private async lineStartIn(buildId: string, from: number, size: number): Promise<number> {
    if (from === 0) return 0;
    for (let at = from - 1; at < size; at += MAX_LOG_EVENT_BYTES) {
      const window = await this.o.store.readLogRange(buildId, at, Math.min(size, at + MAX_LOG_EVENT_BYTES));
      const nl = window.indexOf(0x0a);
      if (nl >= 0) return Math.min(size, at + nl + 1);
      if (window.length === 0) break;
    }
    return from;
  }

  /** Refuses one stream more than the bound, or than the caller's share of it, before the stream starts. */
  checkRoom(callerKey: string): void {
    if (this.open.size >= this.o.maxStreams) {
      throw new ExpoError('LOG_STREAMS_BUSY', `this controller already serves ${this.o.maxStreams} log streams; retry shortly`);
    }
    if ((this.perCaller.get(callerKey) ?? 0) >= this.o.maxPerCaller) {
      throw new ExpoError('LOG_STREAMS_BUSY', `this caller already has ${this.o.maxPerCaller} log streams open on this controller, its limit; close one or retry shortly`);
    }
  }

  /**
   * Streams `build`'s log from byte `from` on `res` (headers already sent) to `caller` until it
   * ends. A failure (the store) is logged and ends the response without `end`: the client
   * reconnects. Counts the stream at once (before its first await), so a `checkRoom` just
   * before holds.
   */
  async run(build: BuildRecord, from: number, res: ServerResponse, log: FastifyBaseLogger, caller: StreamCaller): Promise<void> {
    const { store, notifier } = this.o;
    this.perCaller.set(caller.key, (this.perCaller.get(caller.key) ?? 0) + 1);
    let offset = from;
    let last = build;
    let sentStatus = '';
    let lastWriteAt = Date.now();
    let checkedAt = Date.now();
    // One pending wake-up at most: a notify that lands while the loop reads is not lost.
    let pending = false;
    let wake: (() => void) | null = null;
    const poke = () => {
      pending = true;
      wake?.();
    };
    let closed = false;
    const onClose = () => {
      closed = true;
      poke();
    };
    const stop = () => {
      closed = true;
      res.end();
      poke();
    };
    const unsubscribe = notifier.subscribe(build.id, poke);
    res.on('close', onClose);
    this.open.add(stop);
    // Its life is over: the loop stops between events (nothing is cut mid-event), without `end`.
    const lifeTimer = setTimeout(() => {
      closed = true;
      poke();
    }, this.o.maxLifeMs);
    // The client may have gone while the start was read: its 'close' was before our listener.
    if (res.destroyed || res.socket?.destroyed === true) closed = true;

    /** Writes `text`, waiting for 'drain' when the socket's buffer is full (a slow reader). */
    const write = async (text: string): Promise<void> => {
      if (closed) return;
      lastWriteAt = Date.now();
      if (res.write(text) || res.destroyed) return;
      await new Promise<void>((resolve) => {
        // A client that stopped reading would hold its place forever: cut it (its 'close' follows).
        const deadline = setTimeout(() => {
          log.info({ buildId: build.id, waitedMs: this.o.writeDeadlineMs }, 'log stream cut: its client stopped reading');
          res.destroy();
        }, this.o.writeDeadlineMs);
        const done = () => {
          clearTimeout(deadline);
          res.off('drain', done);
          res.off('close', done);
          resolve();
        };
        res.on('drain', done);
        res.on('close', done);
      });
    };
    const send = (event: string, data: string, id?: number) => write(`${id === undefined ? '' : `id: ${id}\n`}event: ${event}\ndata: ${data}\n\n`);

    try {
      await write(`retry: ${RETRY_MS}\n\n`);
      await send('start', JSON.stringify({ from, size: build.logBytes }));
      // Read again now that the notifier listens: a change between the handler's read and the
      // subscription would otherwise wait for the recheck.
      for (let current: BuildRecord | null = await store.getBuild(build.id); !closed; ) {
        if (current === null) {
          // Pruned while streaming: ended as last seen, with the bytes it was sent.
          await send('end', JSON.stringify({ status: last.status, logBytes: offset }));
          break;
        }
        last = current;
        const status = JSON.stringify(statusOf(current));
        if (status !== sentStatus) {
          await send('status', status);
          sentStatus = status;
        }
        const final = isFinalStatus(current.status);
        offset = await this.sendLog(current, offset, final, send, () => closed);
        if (closed) break;
        if (final && offset >= current.logBytes) {
          await send('end', JSON.stringify({ status: current.status, logBytes: current.logBytes }));
          break;
        }
        // Wait for a wake-up, the recheck, or a ping due. (Bytes left unsent here are a character
        // the writer has not finished storing: its rest comes with a wake-up.)
        if (!pending) {
          const pingIn = Math.max(0, this.o.pingMs - (Date.now() - lastWriteAt));
          const timer = { ref: undefined as NodeJS.Timeout | undefined };
          await new Promise<void>((resolve) => {
            wake = resolve;
            timer.ref = setTimeout(resolve, Math.min(this.o.recheckMs, pingIn));
          });
          wake = null;
          clearTimeout(timer.ref);
        }
        pending = false;
        if (closed) break;
        if (Date.now() - checkedAt >= this.o.recheckMs) {
          checkedAt = Date.now();
          if (!(await caller.stillValid())) {
            // Without `end`: a client that reconnects is told why (401) by the route's auth.
            log.info({ buildId: build.id }, "log stream ended: its caller's credential no longer holds");
            break;
          }
          if (closed) break;
        }
        if (Date.now() - lastWriteAt >= this.o.pingMs) await write(': ping\n\n');
        current = await store.getBuild(build.id);
      }
    } catch (err) {
      // The answer is under way: no error answer can follow, only its end.
      log.error({ err, buildId: build.id }, 'log stream failed');
    } finally {
      clearTimeout(lifeTimer);
      const n = (this.perCaller.get(caller.key) ?? 1) - 1;
      if (n > 0) this.perCaller.set(caller.key, n);
      else this.perCaller.delete(caller.key);
      unsubscribe();
      res.off('close', onClose);
      this.open.delete(stop);
      if (!res.writableEnded) res.end();
    }
  }

  /**
   * Sends the stored bytes from `offset` to `build.logBytes` as `log` events; returns the offset
   * reached. A character the writer has not finished storing waits for the next round, unless
   * the build is final (then its bytes are all there will ever be).
   */
  private async sendLog(build: BuildRecord, offset: number, final: boolean, send: (event: string, data: string, id?: number) => Promise<void>, closed: () => boolean): Promise<number> {
    let at = offset;
    while (at < build.logBytes && !closed()) {
      const to = Math.min(build.logBytes, at + MAX_LOG_EVENT_BYTES);
      const bytes = await this.o.store.readLogRange(build.id, at, to);
      if (bytes.length === 0) break; // pruned between the two reads
      const atEnd = at + bytes.length >= build.logBytes;
      const n = final && atEnd ? bytes.length : wholeCharsLength(bytes);
      if (n === 0) break;
      at += n;
      await send('log', JSON.stringify(bytes.subarray(0, n).toString('utf8')), at);
    }
    return at;
  }
}

/** The stream's own headers; those the app's hooks set (security headers) are kept beside them. */
const STREAM_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache, no-transform',
  // nginx buffers proxied answers by default, which would hold a live log back.
  'x-accel-buffering': 'no',
};

/** Registers ROUTES.streamLog on `streams`. */
export const logStreamRoutes: FastifyPluginAsync<{ streams: LogStreams; store: Pick<Store, 'getBuild'> }> = async (fastify, { streams, store }) => {
  const app = fastify as unknown as App;
  // No HEAD twin: it would hold a stream open to send no body.
  route(app, ROUTES.streamLog, { exposeHeadRoute: false }, async (req, reply) => {
    const build = await store.getBuild(req.params.id);
    if (!build) throw new ExpoError('API_NOT_FOUND', `no build '${req.params.id}'`);
    const lastEventId = req.headers['last-event-id'];
    const from = await streams.startOf(build, typeof lastEventId === 'string' ? lastEventId : undefined, req.query.offset, req.query.tail);
    // Checked after the last await before `run` counts the stream (synchronously, on entry): two
    // requests cannot both take the last place.
    const caller = streams.callerOf(req);
    streams.checkRoom(caller.key);
    reply.hijack();
    reply.raw.writeHead(200, { ...(reply.getHeaders() as OutgoingHttpHeaders), ...STREAM_HEADERS });
    // Headers now, not with the first event: a client waiting on a build with nothing to send yet knows it is connected.
    reply.raw.flushHeaders();
    await streams.run(build, from, reply.raw, req.log, caller);
  });
};
