/**
 * Streams one attempt's output to the controller in ordered, idempotent chunks: at most 1 s or
 * 64 KiB apart. Everything is appended to a local file first, so memory stays bounded however
 * long the controller is away, and any range can be sent again: a chunk the controller already
 * has is a no-op there, and a gap it reports is filled from the file.
 *
 * States: open (flushing on a timer) → closing (`close`: last flush, retried until it lands or
 * the attempt turns out to be over) → closed. A 409 about the attempt ends streaming and is
 * reported through `onAttemptOver`; a 413 (log cap) stops sending, once, with a note; a 409
 * `LOG_CONFLICT` (the controller holds other bytes where ours go: another writer) stops sending
 * this attempt's log for good — retrying could never succeed — and is reported through
 * `onConflict`, the local copy kept; any other refusal the error table (`isRetryable`) calls
 * final stops sending too, reported through `onSendError`. Errors it calls retryable (the
 * controller away, a 5xx) and errors not of ours leave the bytes for the next tick. A retry of
 * a chunk of ours that did land is never a conflict: identical bytes are a no-op there.
 */
import { appendFileSync, closeSync, openSync, readSync, rmSync } from 'node:fs';
import { isExpoError, isRetryable } from '../protocol/errors.ts';
import { isAttemptOver, type HttpErrorDetails } from './controller-client.ts';
import { SecretMasker } from '../protocol/secret-mask.ts';

export interface LogStreamOptions {
  /** Local file holding the whole output of the attempt. */
  path: string;
  /** Absolute byte offset of this attempt's first byte in the build's log. */
  startOffset: number;
  /** Sends a chunk; resolves with the log size the controller now has. */
  send: (offset: number, data: string) => Promise<number>;
  /** Most time between sends while output is pending, ms. Default 1000. */
  flushIntervalMs?: number;
  /** Largest chunk, bytes. Default 64 KiB. */
  maxChunkBytes?: number;
  /** Most bytes kept locally for one attempt; output past it is dropped with a note. Default 1 GiB. */
  maxLocalBytes?: number;
  onAttemptOver?: (err: unknown) => void;
  /** Secret env values: masked as `***` before anything is written or sent (see protocol/secret-mask.ts). */
  secretValues?: readonly string[];
  /** Called when a send fails and will be tried again later. */
  onSendError?: (err: unknown) => void;
  /** Called once when the controller refuses our bytes as conflicting with another writer's; streaming stops. Default: `onSendError`. */
  onConflict?: (err: unknown) => void;
}

export class LogStream {
  private readonly o: Required<Omit<LogStreamOptions, 'onAttemptOver' | 'onSendError' | 'onConflict' | 'secretValues'>> &
    Pick<LogStreamOptions, 'onAttemptOver' | 'onSendError' | 'onConflict'>;
  private readonly masker: SecretMasker;
  /** Why local writes stopped (cap reached, disk full), once said. */
  private dropped: string | null = null;
  private written = 0;
  private acked = 0;
  private timer: NodeJS.Timeout | null = null;
  private sending: Promise<void> | null = null;
  private stopped = false;
  private capped = false;

  constructor(options: LogStreamOptions) {
    this.o = { flushIntervalMs: 1000, maxChunkBytes: 64 * 1024, maxLocalBytes: 1024 ** 3, ...options };
    this.masker = new SecretMasker(options.secretValues ?? []);
    // Build output can hold secrets a step printed: readable by the agent's user only.
    appendFileSync(this.o.path, '', { mode: 0o600 });
    this.timer = setInterval(() => void this.flush(), this.o.flushIntervalMs);
    this.timer.unref();
  }

  /** Bytes appended so far / bytes the controller has confirmed. */
  get bytesWritten(): number {
    return this.written;
  }

  get bytesAcked(): number {
    return this.acked;
  }

  append(text: string): void {
    this.write(this.masker.push(text));
  }

  /** Masks these values too from now on (a clone token fetched during the attempt). */
  addSecrets(values: readonly string[]): void {
    this.masker.add(values);
  }

  private write(text: string): void {
    if (text === '' || this.dropped !== null) return;
    const buf = Buffer.from(text, 'utf8');
    if (this.capped || this.written + buf.length > this.o.maxLocalBytes) {
      // The controller refuses more (its per-build cap) or the local cap is reached: keeping
      // more would only fill this host's disk.
      return this.drop(this.capped ? "the controller's log cap was reached" : `the local cap of ${this.o.maxLocalBytes} bytes was reached`);
    }
    try {
      appendFileSync(this.o.path, buf);
    } catch (err) {
      return this.drop(`the local log could not be written: ${(err as Error).message}`);
    }
    this.written += buf.length;
    if (this.written - this.acked >= this.o.maxChunkBytes) void this.flush();
  }

  /** Stops keeping output; says so once, in the log itself while that is still possible. */
  private drop(why: string): void {
    this.dropped = why;
    const note = Buffer.from(`\n[expo-worker] output from here on is not kept: ${why}\n`);
    try {
      appendFileSync(this.o.path, note);
      this.written += note.length;
    } catch {
      // the disk is full: nothing more to do here
    }
    this.o.onSendError?.(new Error(`log output dropped: ${why}`));
  }

  /** Sends what is pending, one chunk after another; never throws. */
  flush(): Promise<void> {
    if (this.sending) return this.sending;
    this.sending = this.drain().finally(() => {
      this.sending = null;
    });
    return this.sending;
  }

  private async drain(): Promise<void> {
    while (!this.stopped && !this.capped && this.acked < this.written) {
      const chunk = this.readChunk();
      try {
        const size = await this.o.send(this.o.startOffset + this.acked, chunk.toString('utf8'));
        this.acked = Math.min(this.written, Math.max(this.acked + chunk.length, size - this.o.startOffset));
      } catch (err) {
        if (isAttemptOver(err)) {
          this.stopped = true;
          this.o.onAttemptOver?.(err);
          return;
        }
        const d = isExpoError(err, 'HTTP_STATUS') ? (err.details as unknown as HttpErrorDetails) : undefined;
        if (d?.code === 'LOG_OFFSET_GAP' && d.expectedOffset !== undefined && d.expectedOffset >= this.o.startOffset) {
          this.acked = Math.min(this.written, d.expectedOffset - this.o.startOffset);
          continue;
        }
        if (d?.code === 'LOG_CONFLICT') {
          this.stopped = true;
          (this.o.onConflict ?? this.o.onSendError)?.(err);
          return;
        }
        if (d?.status === 413) {
          this.capped = true;
          this.o.onSendError?.(err);
          return;
        }
        this.o.onSendError?.(err);
        // Any other refusal the error table calls final (a key revoked, the build pruned): resending
        // every tick until the close deadline could never land it. The local copy is kept.
        if (isExpoError(err) && !isRetryable(err.code)) this.stopped = true;
        return; // try again on the next tick; the bytes wait in the file
      }
    }
  }

  /** The next chunk from the file, cut back to a whole UTF-8 character. */
  private readChunk(): Buffer {
    const length = Math.min(this.o.maxChunkBytes, this.written - this.acked);
    const buf = Buffer.alloc(length);
    const fd = openSync(this.o.path, 'r');
    try {
      readSync(fd, buf, 0, length, this.acked);
    } finally {
      closeSync(fd);
    }
    let end = length;
    if (this.acked + length < this.written) {
      // Never split a character: find where the last one starts and cut before it if it runs
      // past the chunk (a lead byte says how long its sequence is; 10xxxxxx continues one).
      let lead = length - 1;
      while (lead > 0 && lead > length - 4 && (buf[lead]! & 0xc0) === 0x80) lead--;
      const b = buf[lead]!;
      const size = b < 0x80 ? 1 : b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
      if (lead + size > length && lead > 0) end = lead;
    }
    return buf.subarray(0, end);
  }

  /**
   * Stops the timer and sends what is left, trying until everything is confirmed, the attempt
   * is over, or `deadline` (ms since epoch) passes. Resolves true when the controller has it all.
   */
  async close(deadline = Date.now() + 60_000): Promise<boolean> {
    // The tail the masker kept back: the output is over, so it is what it is.
    this.write(this.masker.end());
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    while (!this.stopped && !this.capped && this.acked < this.written && Date.now() < deadline) {
      await this.flush();
      if (this.acked < this.written && !this.stopped && !this.capped) await new Promise((r) => setTimeout(r, Math.min(1000, this.o.flushIntervalMs)));
    }
    this.stopped = true;
    const delivered = this.acked >= this.written;
    // Delivered: the controller has it all, the local copy has done its job. Otherwise it stays
    // for an operator to recover.
    if (delivered) rmSync(this.o.path, { force: true });
    return delivered;
  }
}
