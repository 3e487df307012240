/**
 * Classifying tart's failures. Tart reports errors on stderr with an exit code that only
 * partly distinguishes them (2 for "does not exist" / "not running" / "already running", 1 for
 * most others, 64 for usage errors — docs/tart.md §1), so we match exit code plus a
 * message substring, never whole lines: messages gain prefixes (`Error: `) and suffixes
 * (`, is your VM running?`) between versions and paths.
 */
import { ExpoError, type ErrorCode } from '../protocol/errors.ts';
import type { ExecErrorDetails } from '../sys/exec.ts';

/** Details of every `VM_*` error raised from a tart call. */
export interface TartErrorDetails {
  argv: readonly string[];
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stderrTail: string;
  stdoutTail?: string;
  timeoutMs?: number;
}

/** Maps tart's output (stderr, or the run log) and exit code to an error code. */
export function classifyTartOutput(exitCode: number | null, output: string): ErrorCode {
  if (output.includes('does not exist')) return 'VM_NOT_FOUND';
  if (output.includes('is already running')) return 'VM_ALREADY_RUNNING';
  if (output.includes('is not running')) return 'VM_NOT_RUNNING';
  if (output.includes('exceeds the system limit')) return 'VM_LIMIT';
  if (output.includes('no IP address found')) return 'VM_NO_IP';
  if (/" is running/.test(output) && exitCode === 1) return 'VM_IS_RUNNING';
  return 'VM_UNKNOWN';
}

function lastLine(text: string): string {
  return (
    text
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('Usage:') && !l.startsWith('See '))
      .at(-1) ?? ''
  );
}

/** Turns an `EXEC_*` error of a tart call into a `VM_*` error; other errors pass through. */
export function tartError(err: unknown, argv: readonly string[]): unknown {
  if (!(err instanceof ExpoError)) return err;
  const d = err.details as Partial<ExecErrorDetails>;
  const details: TartErrorDetails = {
    argv,
    exitCode: d.exitCode ?? null,
    signal: d.signal ?? null,
    stderrTail: d.stderrTail ?? '',
    stdoutTail: d.stdoutTail ?? '',
  };
  const cmd = `tart ${argv.slice(1).join(' ')}`;
  switch (err.code) {
    case 'EXEC_SPAWN':
      return new ExpoError('VM_TART_NOT_FOUND', `cannot run ${argv[0]}: ${d.errno ?? err.message}`, { cause: err, details });
    case 'EXEC_TIMEOUT':
      return new ExpoError('VM_TIMEOUT', `${cmd} hung for ${d.timeoutMs} ms and was killed`, {
        cause: err,
        details: { ...details, timeoutMs: d.timeoutMs },
      });
    case 'EXEC_FAILED': {
      const text = `${details.stderrTail}\n${details.stdoutTail ?? ''}`;
      const code = classifyTartOutput(details.exitCode, text);
      const why = lastLine(details.stderrTail) || lastLine(details.stdoutTail ?? '') || 'no output';
      const how = details.exitCode === null ? `killed by ${details.signal}` : `exit ${details.exitCode}`;
      return new ExpoError(code, `${cmd}: ${why} (${how})`, { cause: err, details });
    }
    default:
      return err;
  }
}

/** The error of a `tart run` process that ended, from its exit and log; null for a clean exit 0. */
export function runExitError(name: string, argv: readonly string[], code: number | null, signal: NodeJS.Signals | null, logTail: string): ExpoError | null {
  if (code === 0) return null;
  const classified = classifyTartOutput(code, logTail);
  const errCode: ErrorCode = classified === 'VM_UNKNOWN' ? 'VM_EXITED' : classified;
  const how = code === null ? `was killed by ${signal}` : `exited ${code}`;
  const why = lastLine(logTail);
  return new ExpoError(errCode, `tart run ${name} ${how}${why ? `: ${why}` : ''}`, {
    details: { argv, exitCode: code, signal, stderrTail: logTail } satisfies TartErrorDetails,
  });
}
