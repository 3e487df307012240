/**
 * In-process wake-ups per build: the build service tells it when a build's log grows or its
 * state changes (phase, progress, cancel request, requeue, end), and each open log stream of
 * that build is woken to read the store again. A wake-up carries nothing but the build id: the
 * store stays the one truth (several controllers may share a database, and a stream that
 * missed a wake-up in between catches up on its next read).
 */

/** Called when the build it was registered for may have changed. */
export type BuildWake = () => void;

export class LogNotifier {
  private readonly listeners = new Map<string, Set<BuildWake>>();

  /** Calls `wake` on each change of build `buildId` until the returned function is called. */
  subscribe(buildId: string, wake: BuildWake): () => void {
    let set = this.listeners.get(buildId);
    if (!set) {
      set = new Set();
      this.listeners.set(buildId, set);
    }
    set.add(wake);
    return () => {
      const current = this.listeners.get(buildId);
      if (!current) return;
      current.delete(wake);
      if (current.size === 0) this.listeners.delete(buildId);
    };
  }

  /** Build `buildId` changed: wakes its listeners (none is the usual case, and costs a map lookup). */
  notify(buildId: string): void {
    const set = this.listeners.get(buildId);
    if (!set) return;
    // A copy: a woken listener may unsubscribe (its stream ended) while the others are called.
    for (const wake of [...set]) wake();
  }

  /** How many listeners there are, of one build or of all; a stream that ended has none left. */
  listenerCount(buildId?: string): number {
    if (buildId !== undefined) return this.listeners.get(buildId)?.size ?? 0;
    let n = 0;
    for (const set of this.listeners.values()) n += set.size;
    return n;
  }
}
