/**
 * A Server-Sent Events reader over real HTTP (node:http, one connection per stream, no agent),
 * for tests of the live log stream: it parses with `eventsource-parser`, keeps every event and
 * comment, lets a test await the next event that matches, and can cut the connection mid-stream.
 */
import { request, type IncomingMessage } from 'node:http';
import { createParser, type EventSourceMessage } from 'eventsource-parser';

export interface SseStream {
  status: number;
  headers: IncomingMessage['headers'];
  /** Every event so far, in order. */
  events: EventSourceMessage[];
  /** Every comment so far (`ping`…). */
  comments: string[];
  /** The `retry:` value the server sent, if any. */
  retryMs: number | null;
  /** The body of a non-200 answer. */
  body: () => string;
  /** Resolves with the first event (from the start) for which `match` holds; rejects if the stream ends first. */
  waitFor: (match: (e: EventSourceMessage) => boolean) => Promise<EventSourceMessage>;
  /** Resolves when the server ends the response (or the connection goes). */
  ended: Promise<void>;
  /** Cuts the connection at once (a dropped network). */
  destroy: () => void;
  /** Stops reading (a slow reader: the server's writes back up), and reads again. */
  pause: () => void;
  resume: () => void;
}

/** Opens `url` with `headers` and resolves once the answer's headers arrived. */
export function openSse(url: string, headers: Record<string, string> = {}): Promise<SseStream> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers: { accept: 'text/event-stream', ...headers }, agent: false });
    req.on('error', reject);
    req.on('response', (res) => {
      const events: EventSourceMessage[] = [];
      const comments: string[] = [];
      const raw: Buffer[] = [];
      const waiters = new Set<() => void>();
      let done = false;
      const wakeAll = () => {
        for (const w of [...waiters]) w();
      };
      const stream: SseStream = {
        status: res.statusCode ?? 0,
        headers: res.headers,
        events,
        comments,
        retryMs: null,
        body: () => Buffer.concat(raw).toString('utf8'),
        ended: new Promise<void>((end) => {
          const finish = () => {
            done = true;
            wakeAll();
            end();
          };
          res.on('end', finish);
          res.on('close', finish);
          res.on('error', finish);
        }),
        waitFor: (match) =>
          new Promise((ok, fail) => {
            const check = () => {
              const found = events.find(match);
              if (found) {
                waiters.delete(check);
                ok(found);
              } else if (done) {
                waiters.delete(check);
                fail(new Error(`the stream ended without the awaited event; got ${events.map((e) => e.event).join(', ')}`));
              }
            };
            waiters.add(check);
            check();
          }),
        destroy: () => {
          req.destroy();
          res.destroy();
        },
        pause: () => void res.pause(),
        resume: () => void res.resume(),
      };
      const parser = createParser({
        onEvent: (e) => {
          events.push(e);
          wakeAll();
        },
        onComment: (c) => void comments.push(c),
        onRetry: (ms) => {
          stream.retryMs = ms;
        },
      });
      const decoder = new TextDecoder();
      res.on('data', (chunk: Buffer) => {
        if (stream.status !== 200) raw.push(chunk);
        else parser.feed(decoder.decode(chunk, { stream: true }));
      });
      resolve(stream);
    });
    req.end();
  });
}

/** The bytes of the `log` events, concatenated (each event's data is one JSON string). */
export function logBytesOf(events: readonly EventSourceMessage[]): Buffer {
  return Buffer.concat(events.filter((e) => e.event === 'log').map((e) => Buffer.from(JSON.parse(e.data) as string, 'utf8')));
}
