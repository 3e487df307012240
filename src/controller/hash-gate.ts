/**
 * A bound on password hashing at once. Each scrypt check takes about 128 MiB and most of a second
 * of one of libuv's four pool threads (which fs, DNS and zlib share), so a flood of sign-ins must
 * not start them all together: a few run, a short queue waits, and the rest are refused at once
 * (the caller answers 429 with `Retry-After`) instead of piling up.
 */
import { ExpoError } from '../protocol/errors.ts';

export interface HashGateOptions {
  /** Hashes run at once. Default 2. */
  concurrency?: number;
  /** Hashes that may wait for a turn; past it, AUTH_RATE_LIMITED. Default 8. */
  queue?: number;
}

export class HashGate {
  private readonly concurrency: number;
  private readonly queueMax: number;
  private running = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(o: HashGateOptions = {}) {
    this.concurrency = o.concurrency ?? 2;
    this.queueMax = o.queue ?? 8;
  }

  /** Hashes running now and waiting for a turn (for tests and metrics). */
  get load(): { running: number; waiting: number } {
    return { running: this.running, waiting: this.waiting.length };
  }

  /**
   * Runs `hash` when a slot is free. AUTH_RATE_LIMITED (`details.retryAfterS` 1), without
   * running it, when every slot is busy and the queue is full: the refusal is decided
   * synchronously, so a caller can take back what it reserved.
   */
  async run<T>(hash: () => Promise<T>): Promise<T> {
    if (this.running >= this.concurrency) {
      if (this.waiting.length >= this.queueMax) {
        throw new ExpoError('AUTH_RATE_LIMITED', 'the controller is busy checking other sign-ins: try again in 1 s', { details: { retryAfterS: 1 } });
      }
      // The slot is handed over by the finishing hash (running stays counted), so no newcomer
      // can jump the queue between the release and the wake-up.
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else {
      this.running++;
    }
    try {
      return await hash();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}
