/**
 * The agent's HTTP transport: one request on Node's own `node:http` / `node:https`, through a
 * keep-alive pool. The agent used undici for this; undici (~340 modules) was the largest single
 * share of the idle agent's memory (docs/benchmarks.md, Agent: the agent's memory by module), while `node:http` is
 * already loaded for the status server (both `require` it: sys/node-http.ts says why), so the
 * transport now adds next to nothing.
 *
 * It keeps undici's timeout semantics: `timeoutMs` bounds the wait for the answer's headers
 * (headersTimeout) and then each wait for more of its body (bodyTimeout). Failures come in two
 * kinds the client tells apart: no answer ({@link TransportError} `phase: 'send'`: refused,
 * reset, timed out before the headers) and an answer cut mid-way (`phase: 'body'`: the status
 * came but the body did not, so whether the call took effect is unknown). An aborted `signal`
 * rejects with the signal's reason, never a TransportError.
 */
import type { Agent as HttpAgent, IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { Agent as HttpsAgent } from 'node:https';
import type { Readable } from 'node:stream';
import { http, https } from '../sys/node-http.ts';

/** A request that got no whole answer: before its headers (`send`) or during its body (`body`). */
export class TransportError extends Error {
  readonly phase: 'send' | 'body';
  constructor(phase: 'send' | 'body', message: string, cause?: unknown) {
    super(message, { cause });
    this.name = 'TransportError';
    this.phase = phase;
  }
}

export interface TransportRequest {
  method: string;
  headers: Record<string, string>;
  /** A JSON text (sent with its length), a stream (its length is the caller's header), or none. */
  body?: string | Readable;
  /** Bound on the wait for the headers, then on each wait for more body, ms. */
  timeoutMs: number;
  signal?: AbortSignal;
}

export interface TransportAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
}

/** The keep-alive pools (plain and TLS) of one client; `close` ends their sockets. */
export class HttpPool {
  private readonly plain: HttpAgent;
  private secure: HttpsAgent | undefined;
  private readonly options: { keepAlive: true; maxSockets: number; timeout: number };

  /**
   * `maxSockets` per controller (default 16), `idleTimeoutMs` how long an unused connection
   * stays open (default 30 000, under Fastify's 72 s so the controller is not the one to close
   * a connection the agent is about to reuse).
   */
  constructor(o: { maxSockets?: number; idleTimeoutMs?: number } = {}) {
    this.options = { keepAlive: true, maxSockets: o.maxSockets ?? 16, timeout: o.idleTimeoutMs ?? 30_000 };
    this.plain = new http.Agent(this.options);
  }

  /** One request to `url`, answered whole (see the module's account of errors). */
  send(url: URL, r: TransportRequest): Promise<TransportAnswer> {
    const tls = url.protocol === 'https:';
    const agent = tls ? (this.secure ??= new (https().Agent)(this.options)) : this.plain;
    const make = tls ? https().request : http.request;
    const headers = { ...r.headers };
    if (typeof r.body === 'string') headers['content-length'] = String(Buffer.byteLength(r.body));
    return new Promise<TransportAnswer>((resolve, reject) => {
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      const finish = (err: unknown, answer?: TransportAnswer) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        r.signal?.removeEventListener('abort', onAbort);
        if (err === undefined) resolve(answer!);
        else reject(err);
      };
      const onAbort = () => {
        req.destroy();
        finish(r.signal!.reason);
      };
      // Armed for the headers, re-armed for each wait for more body (undici's two timeouts).
      const arm = (phase: 'send' | 'body') => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          const what = phase === 'send' ? 'headers' : 'body';
          const err = new TransportError(phase, `${what} timeout: no ${what === 'headers' ? 'answer' : 'more of the answer'} within ${r.timeoutMs} ms`);
          req.destroy(err);
          finish(err);
        }, r.timeoutMs);
      };
      const req = make(url, { method: r.method, headers, agent }, (res: IncomingMessage) => {
        arm('body');
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => {
          chunks.push(c);
          arm('body');
        });
        res.on('end', () => finish(undefined, { status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
        // The connection closed before the whole body came (Node reports it as 'aborted').
        res.on('error', (err) => finish(r.signal?.aborted ? r.signal.reason : new TransportError('body', err.message, err)));
        res.on('close', () => {
          if (!res.complete) finish(r.signal?.aborted ? r.signal.reason : new TransportError('body', 'the connection closed before the answer was whole'));
        });
      });
      req.on('error', (err) => finish(r.signal?.aborted ? r.signal.reason : new TransportError('send', err.message, err)));
      if (r.signal?.aborted) {
        onAbort();
        return;
      }
      r.signal?.addEventListener('abort', onAbort, { once: true });
      arm('send');
      if (r.body === undefined || typeof r.body === 'string') {
        req.end(r.body);
      } else {
        const stream = r.body;
        stream.on('error', (err) => {
          const e = new TransportError('send', `the request body could not be read: ${err.message}`, err);
          req.destroy(e);
          finish(e);
        });
        stream.pipe(req);
      }
    });
  }

  /** Ends every pooled connection; requests still in flight are cut. */
  close(): void {
    this.plain.destroy();
    this.secure?.destroy();
  }
}
