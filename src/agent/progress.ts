/**
 * Progress markers in build output. A line of the form
 *
 *     ::progress 45
 *
 * (optionally with a `%`, leading spaces allowed) sets the build's progress to 45 %. The agent
 * writes it to the progress file in the VM, and vm-monitor.sh reports it with its next
 * heartbeat. Without markers, progress advances step by step.
 */
const MARKER = /^\s*::progress\s+(\d{1,3})%?\s*$/;

/** The progress a line sets, or null. */
export function parseProgressMarker(line: string): number | null {
  const m = MARKER.exec(line);
  if (!m) return null;
  const n = Number(m[1]);
  return n >= 0 && n <= 100 ? n : null;
}

/** Progress when step `index` (0-based) of `count` starts. */
export const stepProgress = (index: number, count: number): number => Math.floor((index / count) * 100);

/** Splits a stream into lines, keeping the unfinished tail for the next chunk. */
export class LineSplitter {
  private tail = '';

  push(text: string): string[] {
    const parts = (this.tail + text).split('\n');
    this.tail = parts.pop() ?? '';
    // A very long line without newline is not a marker; do not hold it forever.
    if (this.tail.length > 4096) this.tail = '';
    return parts;
  }
}
