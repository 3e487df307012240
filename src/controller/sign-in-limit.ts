/**
 * The sign-in rate limit: failed sign-ins counted per name and per address, in memory, over a
 * fixed window that opens at the first failure. Past the limit for either, sign-in is refused
 * (before any password is hashed) until that window closes. An attempt is counted as a failure
 * when it starts (`reserve`), before its password is hashed: requests in flight at the same time
 * cannot each slip past the check. A success then clears its name's count and takes back its own
 * reservation on the address (not the address's other failures: one good password must not reset
 * a guesser's count on other names). IPv6 addresses are counted by their /64, the block one
 * host or site is usually given.
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
    const wait = Math.max(this.closedFor(this.names, name, this.maxPerName, now), this.closedFor(this.addresses, addressKey(address), this.maxPerAddress, now));
    return wait > 0 ? Math.ceil(wait / 1000) : 0;
  }

  /**
   * Starts an attempt: 0 and the attempt counted as a failure when sign-in is open for this name
   * and address; else the seconds to wait, and nothing counted. Synchronous, so of any number of
   * requests in flight at once at most the limit's worth get through.
   */
  reserve(name: string, address: string): number {
    const wait = this.retryAfterS(name, address);
    if (wait > 0) return wait;
    const now = this.now();
    this.count(this.names, name, now);
    this.count(this.addresses, addressKey(address), now);
    return 0;
  }

  /** The reserved attempt was a good password: the name's count is cleared, the address's reservation taken back. */
  succeeded(name: string, address: string): void {
    this.names.delete(name);
    this.release(this.addresses, addressKey(address));
  }

  /** The reserved attempt never checked a password (refused for another reason): both reservations are taken back. */
  cancelled(name: string, address: string): void {
    this.release(this.names, name);
    this.release(this.addresses, addressKey(address));
  }

  private release(map: Map<string, Window>, key: string): void {
    const w = map.get(key);
    if (w && w.failures > 0) w.failures--;
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

/**
 * The key an address is counted under: an IPv4 address as it is, an IPv6 address by its /64 (its
 * first four groups), since one host or site usually holds a whole /64 and could otherwise try
 * from 2^64 addresses. An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`) is its IPv4 address.
 */
export function addressKey(address: string): string {
  const a = address.toLowerCase();
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/.exec(a);
  if (mapped) return mapped[1]!;
  if (!a.includes(':')) return a;
  const [head = '', tail = ''] = a.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = a.includes('::') ? (tail === '' ? [] : tail.split(':')) : [];
  // Expand "::" to the zero groups it stands for; an embedded IPv4 tail counts as two groups.
  const groupsOf = (parts: string[]) => parts.reduce((n, g) => n + (g.includes('.') ? 2 : 1), 0);
  const zeros = a.includes('::') ? Array<string>(Math.max(8 - groupsOf(left) - groupsOf(right), 0)).fill('0') : [];
  const groups = [...left, ...zeros, ...right].slice(0, 4).map((g) => (g.replace(/^0+(?=.)/, '')));
  return `${groups.join(':')}::/64`;
}
