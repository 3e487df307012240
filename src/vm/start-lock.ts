/**
 * Serializes "count the running VMs, then start one" among the slots of one process, so that two
 * slots starting at once cannot both see one running VM and both start — making three. (Other
 * tools on the host are outside our control; their VMs are counted, and tart's own limit error
 * is still classified as `VM_LIMIT`.)
 */
export class VmStartLock {
  private tail: Promise<unknown> = Promise.resolve();

  /** Runs `fn` once every earlier holder has finished. */
  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn, fn);
    this.tail = result.catch(() => undefined);
    return result;
  }
}
