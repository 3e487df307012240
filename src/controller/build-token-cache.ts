/**
 * Build tokens already resolved: the digest of a build token (`ewb_…`) → its attempt, so that
 * a build heartbeat — the controller's most frequent request — costs one store statement (the
 * fenced touch) instead of two (the token lookup, then the touch).
 *
 * Why a stale entry is harmless: a build token is accepted by one route only, the build
 * heartbeat, and that route reads nothing from the attempt but its build id, worker id and lease,
 * which never change for an attempt. Its write is fenced in the store by the lease *and* an active
 * status (`touchBuild`), so an entry for an attempt that has since ended — here or on another
 * controller sharing the database — cannot extend anything: the touch matches no row, and the
 * refusal is then worked out from the store, the attempt read again (`BuildService.buildHeartbeat`).
 * Only attempts not yet over when read are kept, and a token whose heartbeat was refused is
 * dropped (`forget`): an attempt that ended is then read from the store every time.
 *
 * Bounded: at most `maxEntries`; past it the oldest entry goes (a live build's token is then
 * read again once). A farm has at most a few thousand builds running at once.
 */
import type { AttemptRecord } from './store/store.ts';

/** Default bound: twice the builds of a 2,000-worker farm with two slots each. */
export const DEFAULT_BUILD_TOKEN_CACHE_ENTRIES = 8192;

export class BuildTokenCache {
  private readonly entries = new Map<string, AttemptRecord>();
  private readonly maxEntries: number;

  /** @param maxEntries the most tokens kept (default `DEFAULT_BUILD_TOKEN_CACHE_ENTRIES`). */
  constructor(maxEntries = DEFAULT_BUILD_TOKEN_CACHE_ENTRIES) {
    if (!Number.isInteger(maxEntries) || maxEntries < 1) throw new RangeError(`maxEntries must be a positive integer, got ${maxEntries}`);
    this.maxEntries = maxEntries;
  }

  /** The attempt of the token with this digest (hex SHA-256), when known. */
  get(tokenHash: string): AttemptRecord | undefined {
    return this.entries.get(tokenHash);
  }

  /** Keeps `attempt` under its token's digest while it has not ended. */
  remember(attempt: AttemptRecord): void {
    if (attempt.endedAt !== null) return;
    if (this.entries.size >= this.maxEntries && !this.entries.has(attempt.buildTokenHash)) {
      // Map iterates in insertion order: the first key is the oldest entry.
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
    this.entries.set(attempt.buildTokenHash, attempt);
  }

  /** Drops the token with this digest (its attempt was found over, or gone). */
  forget(tokenHash: string): void {
    this.entries.delete(tokenHash);
  }

  /** How many tokens are kept. */
  get size(): number {
    return this.entries.size;
  }
}
