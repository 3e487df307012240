/**
 * Which workers are inside a request the controller holds open — a long poll or a worker
 * heartbeat waiting for news — and how a waiting heartbeat is woken.
 *
 * A worker inside such a wait is alive even though its last contact grows old: the watchdog asks
 * `isWaiting` before marking it offline. A heartbeat wait ends when its time runs out, its client
 * goes away, or `wake(workerId)` says something changed for that worker (a cancel was asked for
 * one of its builds, or one of them was ended by the controller), so the agent hears of it at
 * once instead of at its next periodic heartbeat.
 *
 * In memory, per controller: a restart answers every open request, and the agents reconnect.
 * So with several controllers on one database the leader's watchdog cannot ask another
 * controller's `isWaiting`: each controller renews the store contact (`lastSeenAt`) of the
 * workers in its own waits every quarter heartbeat timeout (`ids()`, `BuildService.touchWaiting`),
 * and the leader sees them alive in the store.
 */
export class WorkerWaits {
  private readonly open = new Map<string, number>();
  private readonly wakers = new Map<string, Set<() => void>>();

  /** Counts the worker as waiting while `fn` runs. */
  async hold<T>(workerId: string, fn: () => Promise<T>): Promise<T> {
    this.open.set(workerId, (this.open.get(workerId) ?? 0) + 1);
    try {
      return await fn();
    } finally {
      const n = (this.open.get(workerId) ?? 1) - 1;
      if (n <= 0) this.open.delete(workerId);
      else this.open.set(workerId, n);
    }
  }

  isWaiting(workerId: string): boolean {
    return this.open.has(workerId);
  }

  /** The workers inside a wait now. */
  ids(): string[] {
    return [...this.open.keys()];
  }

  /** Resolves after `ms`, on `wake(workerId)`, or when `signal` aborts — whichever comes first. */
  wait(workerId: string, ms: number, signal?: AbortSignal): Promise<void> {
    if (ms <= 0 || signal?.aborted) return Promise.resolve();
    return this.hold(
      workerId,
      () =>
        new Promise<void>((resolve) => {
          const set = this.wakers.get(workerId) ?? new Set<() => void>();
          this.wakers.set(workerId, set);
          const done = () => {
            clearTimeout(timer);
            signal?.removeEventListener('abort', done);
            set.delete(done);
            if (set.size === 0 && this.wakers.get(workerId) === set) this.wakers.delete(workerId);
            resolve();
          };
          const timer = setTimeout(done, ms);
          signal?.addEventListener('abort', done, { once: true });
          set.add(done);
        }),
    );
  }

  /** Ends every heartbeat wait of this worker now. */
  wake(workerId: string): void {
    for (const done of [...(this.wakers.get(workerId) ?? [])]) done();
  }

  /** Ends every wait (the controller is stopping). */
  wakeAll(): void {
    for (const id of [...this.wakers.keys()]) this.wake(id);
  }
}
