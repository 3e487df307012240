/**
 * Following a build: its log from the last byte read (`GET …/logs?offset=N`, whose
 * `X-Log-Size` and `X-Build-Status` headers say where the log ends and whether the build is
 * over) and its progress on stderr, until the build is final and the whole log is out.
 */
import type { BuildView } from '../protocol/schemas.ts';
import type { AdminApi } from './admin-api.ts';

/**
 * The output and pacing `follow` needs, declared here rather than taken from the commands' whole
 * `CliIo` (which `commands.ts` passes as it is): the commands import `follow`, so follow
 * importing the commands back would be a cycle, if a type-only one.
 */
export interface FollowIo {
  stdout: (text: string | Uint8Array) => void;
  stderr: (text: string) => void;
  /** How often to poll, ms. Default 1000. */
  followIntervalMs?: number;
}

const FINAL = new Set(['succeeded', 'failed', 'cancelled']);

/** Streams the log to stdout and status/progress changes to stderr; resolves with the final build. */
export async function follow(api: Pick<AdminApi, 'logs' | 'build'>, id: string, io: FollowIo): Promise<BuildView> {
  const intervalMs = io.followIntervalMs ?? 1000;
  let offset = 0;
  let shown = '';
  for (;;) {
    const slice = await api.logs(id, offset);
    if (slice.data.length > 0) io.stdout(slice.data);
    offset += slice.data.length;
    const build = await api.build(id);
    const line = `${build.status}${build.progress === null ? '' : ` ${build.progress}%`}${build.workerId ? ` on ${build.workerId}` : ''}${build.attempt > 1 ? ` (attempt ${build.attempt} of ${build.maxAttempts})` : ''}`;
    if (line !== shown) {
      io.stderr(`[expo-worker] build ${id}: ${line}\n`);
      shown = line;
    }
    // Final, and every byte stored by then printed: done. (The log is complete once the build is final.)
    if (FINAL.has(slice.status) && FINAL.has(build.status) && offset >= slice.size) {
      // The step's own exit code is printed, not returned: it could be any number (see exit-codes.ts).
      const exit = build.exitCode === null ? '' : ` (step exit code ${build.exitCode})`;
      if (build.failureReason) io.stderr(`[expo-worker] build ${id} failed: ${build.failureReason}${build.message ? ` — ${build.message}` : ''}${exit}\n`);
      else if (build.status === 'cancelled') io.stderr(`[expo-worker] build ${id} was cancelled\n`);
      return build;
    }
    await new Promise((r) => setTimeout(r, slice.data.length > 0 && !FINAL.has(slice.status) ? Math.min(intervalMs, 250) : intervalMs));
  }
}
