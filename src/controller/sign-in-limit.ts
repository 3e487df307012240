/**
 * The sign-in rate limit: failed sign-ins counted per name and per address, in memory, over a
 * fixed window that opens at the first failure. Past the limit for either, sign-in is refused
 * (before any password is hashed) until that window closes. A success clears its name's count
 * (not the address's: one good password must not reset a guesser's count on other names).
 * Counts are per controller process: a restart forgives, which only a long-lived attacker
 * notices, and costs nothing a person needs.
 */

export interface SignInLimitOptions {
  now: () => number;
  /** Failures that close a name, per window. Default 5. */
  maxPerName?: number;
  /** Failures that close an address, per window. Default 20. */
  maxPerAddress?: number;
  /** The window, ms. Default 15 min. */
  windowMs?: number;
  /** The most names (and addresses) tracked; the oldest windows go first past it. Default 10 000. */
  maxTracked?: number;
}

interface Window {
  openedAt: number;
  failures: number;
}

export class SignInLimit {
  private readonly now: () => number;
  private readonly maxPerName: number;
  private readonly maxPerAddress: number;
  private readonly windowMs: number;
  private readonly maxTracked: number;
  private readonly names = new Map<string, Window>();
  private readonly addresses = new Map<string, Window>();

  constructor(o: SignInLimitOptions) {
    this.now = o.now;
    this.maxPerName = o.maxPerName ?? 5;
    this.maxPerAddress = o.maxPerAddress ?? 20;
    this.windowMs = o.windowMs ?? 15 * 60_000;
    this.maxTracked = o.maxTracked ?? 10_000;
  }

  /** Seconds until sign-in for this name from this address is allowed again; 0 when it is now. */
  retryAfterS(name: string, address: string): number {
    const now = this.now();
    const wait = Math.max(this.closedFor(this.names, name, this.maxPerName, now), this.closedFor(this.addresses, address, this.maxPerAddress, now));
    return wait > 0 ? Math.ceil(wait / 1000) : 0;
  }

  failed(name: string, address: string): void {
    const now = this.now();
    this.count(this.names, name, now);
    this.count(this.addresses, address, now);
  }

  succeeded(name: string): void {
    this.names.delete(name);
  }

  private closedFor(map: Map<string, Window>, key: string, max: number, now: number): number {
    const w = map.get(key);
    if (!w) return 0;
    const left = w.openedAt + this.windowMs - now;
    if (left <= 0) {
      map.delete(key);
      return 0;
    }
    return w.failures >= max ? left : 0;
  }

  private count(map: Map<string, Window>, key: string, now: number): void {
    const w = map.get(key);
    if (w && w.openedAt + this.windowMs > now) {
      w.failures++;
      return;
    }
    map.delete(key);
    // A Map iterates in insertion order: the first entries opened their windows first.
    while (map.size >= this.maxTracked) map.delete(map.keys().next().value!);
    map.set(key, { openedAt: now, failures: 1 });
  }
}
