/**
 * The result every health check returns. A check never throws for "unhealthy": it returns
 * `ok: false` with a `detail` that says precisely what was seen. Only a programming error
 * escapes as an exception.
 */

/** The names of the four VM checks (`tart list`, `tart ip`, `echo alive`, `df -h /`). */
export type VmCheckName = 'vm-exists' | 'vm-ip' | 'ssh-alive' | 'disk-space';

/** The names of the host preflight checks. */
export type PreflightCheckName = 'tart-found' | 'base-vm-exists' | 'host-disk' | 'vm-limit';

export interface CheckResult<N extends string = string> {
  name: N;
  ok: boolean;
  /** What was seen: the value on success, the precise reason on failure. */
  detail: string;
  durationMs: number;
  /** The error code behind a failure, when there is one (`SSH_AUTH_REJECTED`, `VM_NO_IP`…). */
  code?: string;
}

/** Runs `body`, timing it; a thrown error becomes `ok: false` with its message and code. */
export async function timed<N extends string>(
  name: N,
  body: () => Promise<{ ok: boolean; detail: string; code?: string }>,
): Promise<CheckResult<N>> {
  const started = performance.now();
  try {
    const r = await body();
    return { name, ...r, durationMs: Math.round(performance.now() - started) };
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    return {
      name,
      ok: false,
      detail: err instanceof Error ? err.message : String(err),
      durationMs: Math.round(performance.now() - started),
      ...(typeof code === 'string' ? { code } : {}),
    };
  }
}
