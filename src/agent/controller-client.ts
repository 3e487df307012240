/**
 * The agent's side of the HTTP API, on Node's own HTTP client (one keep-alive pool,
 * http-transport.ts) with p-retry for the calls
 * that are safe to repeat. Every call is idempotent on the controller except the poll (a lost
 * poll answer is put back by the controller after a grace), so phase, logs, heartbeats and
 * completion are retried with backoff and jitter while the controller is unreachable or
 * answers 5xx, 408 or 429 — as the error table (`isRetryable`, `answerErrorCode` in
 * protocol/errors.ts) says — and never on another 4xx, which is an answer (a 409 means: abort
 * this build). Paths and methods come from the route table (protocol/routes.ts), through its
 * schema-free rows (protocol/agent-routes.ts): the agent never loads TypeBox.
 *
 * Failover: the client may know several controllers (one database behind them all). One of them
 * is current; every request goes to it. When a request gets no answer (connection refused or
 * reset, socket closed before or during the answer, a timeout, host unreachable) or a 502, 503 or
 * 504, the client moves to the next URL, round-robin (A → B → A…), and sends the request again
 * at once; only once every URL failed in a row does the error reach the caller — and with it the
 * backoff of `retried`. The poll is re-sent like the rest: a claim lost with its controller is
 * put back by the controller after a grace. An artifact's body is a stream that cannot be read
 * twice, so its upload moves the client on but leaves the retry to its caller.
 */
import type { Readable } from 'node:stream';
import pRetry from 'p-retry';
import { answerErrorCode, ExpoError, isExpoError, isRetryable } from '../protocol/errors.ts';
import { AGENT_ROUTES } from '../protocol/agent-routes.ts';
import { pathOf, type HttpMethod } from '../protocol/route-paths.ts';
import type { AnswerOf, ROUTES as TABLE } from '../protocol/routes.ts';
import { parseLiveness, type Liveness } from '../protocol/liveness.ts';
import type { CompleteBody, PollBody, PollResponse, WorkerHeartbeatBody } from '../protocol/schemas.ts';
import { HttpPool, TransportError } from './http-transport.ts';

export interface ControllerClientOptions {
  /** The controller's base URL, or several (tried in this order, round-robin, when one cannot be reached). */
  baseUrl: string | readonly string[];
  apiKey: string;
  workerId: string;
  /** Per-request timeout for ordinary calls, ms. Default 30 000. */
  requestTimeoutMs?: number;
  /** Backoff of retried calls: first delay and cap, ms. Defaults 500 and 10 000. */
  retryMinMs?: number;
  retryMaxMs?: number;
  /** Told of every request that failed (not of an aborted one), e.g. to count it. */
  onRequestError?: (err: ExpoError) => void;
  /** Told when the client moves to the next controller (`from` gave no answer or a 502/503/504). */
  onSwitch?: (from: string, to: string, err: ExpoError) => void;
}

type Method = HttpMethod;

interface SendOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
  headers?: Record<string, string>;
}

/** A request body sent as bytes from a stream (an artifact), not as JSON. */
export class RawBody {
  readonly stream: Readable;
  readonly length: number;
  constructor(stream: Readable, length: number) {
    this.stream = stream;
    this.length = length;
  }
}

/** An answer: status, parsed JSON body, and the controller's clocks when it stated them. */
export interface Answer<T> {
  status: number;
  body: T | null;
  liveness: Liveness | null;
}

export interface HttpErrorDetails {
  method: string;
  path: string;
  status?: number;
  code?: string;
  expectedOffset?: number;
}

export interface RetryOptions {
  /** How many retries; Infinity retries until the call is answered or `signal` aborts. Default 5. */
  retries?: number;
  signal?: AbortSignal;
  onRetry?: (err: ExpoError, attempt: number, delayMs: number) => void;
}

/** Answers a proxy or a stopping controller gives when another controller may well answer. */
const SWITCH_STATUSES = new Set([502, 503, 504]);

export class ControllerClient {
  private readonly o: Required<Omit<ControllerClientOptions, 'onRequestError' | 'onSwitch' | 'baseUrl'>> & Pick<ControllerClientOptions, 'onRequestError' | 'onSwitch'>;
  private readonly pool: HttpPool;
  private readonly baseUrls: readonly string[];
  /** Index of the current controller in `baseUrls`. */
  private current = 0;

  constructor(options: ControllerClientOptions) {
    const { baseUrl, ...rest } = options;
    const urls = typeof baseUrl === 'string' ? [baseUrl] : [...baseUrl];
    if (urls.length === 0) throw new TypeError('ControllerClient: baseUrl must name at least one controller');
    this.baseUrls = Object.freeze(urls.map((u) => u.replace(/\/+$/, '')));
    this.o = { requestTimeoutMs: 30_000, retryMinMs: 500, retryMaxMs: 10_000, ...rest };
    this.pool = new HttpPool({ idleTimeoutMs: 30_000, maxSockets: 16 });
  }

  /** The controller requests go to now. */
  get baseUrl(): string {
    return this.baseUrls[this.current]!;
  }

  async close(): Promise<void> {
    this.pool.close();
  }

  /**
   * One request, to the current controller and, when it cannot answer, to each other one in
   * turn; resolves with the status and parsed body, rejects with HTTP_UNREACHABLE or HTTP_STATUS.
   */
  async send<T>(method: Method, path: string, body: unknown, opts: SendOptions = {}): Promise<Answer<T>> {
    // A stream is read once: its upload tries one controller (moving on if it fails).
    const tries = body instanceof RawBody ? 1 : this.baseUrls.length;
    for (let n = 1; ; n++) {
      const index = this.current;
      try {
        return await this.sendOnce<T>(this.baseUrls[index]!, method, path, body, opts);
      } catch (err) {
        if (!isExpoError(err)) throw err;
        this.o.onRequestError?.(err);
        if (opts.signal?.aborted || !shouldSwitch(err)) throw err;
        this.switchFrom(index, err);
        if (n >= tries) throw err;
      }
    }
  }

  /**
   * Moves on from `index` unless another request already did: requests in flight when a
   * controller dies all fail, and one switch is enough.
   */
  private switchFrom(index: number, err: ExpoError): void {
    if (this.baseUrls.length < 2 || this.current !== index) return;
    this.current = (index + 1) % this.baseUrls.length;
    this.o.onSwitch?.(this.baseUrls[index]!, this.baseUrls[this.current]!, err);
  }

  private async sendOnce<T>(baseUrl: string, method: Method, path: string, body: unknown, opts: SendOptions): Promise<Answer<T>> {
    const timeoutMs = opts.timeoutMs ?? this.o.requestTimeoutMs;
    const raw = body instanceof RawBody ? body : null;
    const headers: Record<string, string> = { ...opts.headers, authorization: `Bearer ${this.o.apiKey}` };
    if (raw) Object.assign(headers, { 'content-type': 'application/octet-stream', 'content-length': String(raw.length) });
    else if (body !== undefined) headers['content-type'] = 'application/json';
    let res;
    try {
      res = await this.pool.send(new URL(`${baseUrl}${path}`), {
        method,
        headers,
        body: raw ? raw.stream : body === undefined ? undefined : JSON.stringify(body),
        timeoutMs,
        signal: opts.signal,
      });
    } catch (cause) {
      if (opts.signal?.aborted || !(cause instanceof TransportError)) throw cause;
      // The connection died during the answer: whether the call took effect is unknown, so it
      // counts as unanswered and is sent again (every retried call is idempotent). Reading an
      // empty body here would have taken a log append cut mid-answer for acknowledged.
      const cut = cause.phase === 'body' ? 'the answer was cut: ' : '';
      throw new ExpoError('HTTP_UNREACHABLE', `controller unreachable (${method} ${path}): ${cut}${cause.message}`, {
        cause,
        details: { method, path } satisfies HttpErrorDetails,
      });
    }
    const text = res.text;
    const parsed = text === '' ? null : (safeJson(text) as T | null);
    if (res.status >= 400) {
      const err = parsed as { code?: string; message?: string; expectedOffset?: number } | null;
      const details: HttpErrorDetails = { method, path, status: res.status, code: err?.code, expectedOffset: err?.expectedOffset };
      // The error table decides: the controller's trouble (5xx, a request timeout) or a proxy's
      // is worth another try (HTTP_UNREACHABLE); any other answer is final (HTTP_STATUS — a 409
      // means: abort this build).
      const code = isRetryable(answerErrorCode(res.status, parsed)) ? 'HTTP_UNREACHABLE' : 'HTTP_STATUS';
      throw new ExpoError(code, `${method} ${path}: ${res.status} ${err?.code ?? ''} ${err?.message ?? text.slice(0, 200)}`.trim(), { details });
    }
    return { status: res.status, body: parsed, liveness: parseLiveness(res.headers) };
  }

  /** `send`, retried with backoff and jitter while the error table says so (network errors, 5xx, 408, 429). */
  async retried<T>(method: Method, path: string, body: unknown, r: RetryOptions = {}, timeoutMs?: number): Promise<Answer<T>> {
    return pRetry(() => this.send<T>(method, path, body, { signal: r.signal, timeoutMs }), {
      retries: r.retries ?? 5,
      factor: 2,
      minTimeout: this.o.retryMinMs,
      maxTimeout: this.o.retryMaxMs,
      randomize: true,
      signal: r.signal,
      shouldRetry: ({ error }) => isExpoError(error) && isRetryable(error.code),
      onFailedAttempt: ({ error, attemptNumber, retriesLeft, retryDelay }) => {
        if (isExpoError(error) && isRetryable(error.code) && retriesLeft > 0) r.onRetry?.(error, attemptNumber, retryDelay);
      },
    });
  }

  /**
   * A long poll: the claim (null when no build came within `waitS`) and the controller's
   * clocks as it stated them. Not retried: the caller loops.
   */
  async poll(body: PollBody, signal?: AbortSignal): Promise<{ claim: PollResponse | null; liveness: Liveness | null }> {
    const res = await this.send<AnswerOf<typeof TABLE.poll>>(AGENT_ROUTES.poll.method, pathOf(AGENT_ROUTES.poll, { id: this.o.workerId }), body, { signal, timeoutMs: ((body.waitS ?? 25) + 15) * 1000 });
    return { claim: res.status === 204 ? null : res.body, liveness: res.liveness };
  }

  /** A worker heartbeat; with `waitS` the controller may hold it that long, answering early with a cancel or an abort. */
  async workerHeartbeat(body: WorkerHeartbeatBody, r?: RetryOptions): Promise<{ abort: string[]; cancel: string[]; liveness: Liveness | null }> {
    const timeoutMs = (body.waitS ?? 0) * 1000 + this.o.requestTimeoutMs;
    const res = await this.retried<AnswerOf<typeof TABLE.workerHeartbeat>>(AGENT_ROUTES.workerHeartbeat.method, pathOf(AGENT_ROUTES.workerHeartbeat, { id: this.o.workerId }), body, { retries: 2, ...r }, timeoutMs);
    return { abort: res.body?.abort ?? [], cancel: res.body?.cancel ?? [], liveness: res.liveness };
  }

  async phase(buildId: string, lease: string, phase: 'preparing' | 'running', r?: RetryOptions): Promise<void> {
    await this.retried(AGENT_ROUTES.phase.method, pathOf(AGENT_ROUTES.phase, { id: buildId }), { lease, phase }, r);
  }

  async stepStarted(buildId: string, lease: string, index: number, r?: RetryOptions): Promise<void> {
    await this.retried(AGENT_ROUTES.phase.method, pathOf(AGENT_ROUTES.phase, { id: buildId }), { lease, phase: 'running', step: index }, r);
  }

  async appendLog(buildId: string, lease: string, offset: number, data: string, r?: RetryOptions): Promise<number> {
    const res = await this.retried<AnswerOf<typeof TABLE.appendLog>>(AGENT_ROUTES.appendLog.method, pathOf(AGENT_ROUTES.appendLog, { id: buildId }), { lease, offset, data }, r);
    return res.body?.logBytes ?? offset;
  }

  /** Uploads one artifact. Not retried here: a retry needs a fresh stream, so the caller loops. */
  async uploadArtifact(buildId: string, lease: string, name: string, body: RawBody, timeoutMs = 30 * 60_000): Promise<{ sizeBytes: number; sha256: string }> {
    // The name is a relative path: each segment encoded, the slashes kept (the route is a wildcard).
    const path = pathOf(AGENT_ROUTES.uploadArtifact, { id: buildId, '*': name });
    const res = await this.send<AnswerOf<typeof TABLE.uploadArtifact>>(AGENT_ROUTES.uploadArtifact.method, path, body, { timeoutMs, headers: { 'x-expo-lease': lease } });
    return res.body ?? { sizeBytes: body.length, sha256: '' };
  }

  /** The clone token of a GitHub build's commit (null: clone anonymously). Never logged. */
  async checkoutToken(buildId: string, lease: string, r?: RetryOptions): Promise<{ token: string | null; expiresAt: string | null }> {
    const res = await this.retried<AnswerOf<typeof TABLE.checkoutToken>>(AGENT_ROUTES.checkoutToken.method, pathOf(AGENT_ROUTES.checkoutToken, { id: buildId }), { lease }, r);
    return res.body ?? { token: null, expiresAt: null };
  }

  async complete(buildId: string, body: CompleteBody, r?: RetryOptions): Promise<{ status: string }> {
    const res = await this.retried<AnswerOf<typeof TABLE.complete>>(AGENT_ROUTES.complete.method, pathOf(AGENT_ROUTES.complete, { id: buildId }), body, r);
    return res.body ?? { status: 'unknown' };
  }
}

/** No answer at all (no status), or a 502/503/504: another controller may answer. */
function shouldSwitch(err: ExpoError): boolean {
  if (err.code !== 'HTTP_UNREACHABLE') return false;
  const status = (err.details as unknown as HttpErrorDetails).status;
  return status === undefined || SWITCH_STATUSES.has(status);
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** True when the controller answered 409 about this build: its attempt is over; abort and recycle. */
export function isAttemptOver(err: unknown): boolean {
  if (!isExpoError(err, 'HTTP_STATUS')) return false;
  const d = err.details as unknown as HttpErrorDetails;
  return d.status === 409 && (d.code === 'LEASE_STALE' || d.code === 'BUILD_OVER');
}
