/**
 * An attempt's artifacts: the files its patterns match in the VM's work/, uploaded to the
 * controller one by one, each problem (no match, a bad name, too large, an upload that failed)
 * noted in the build log and returned for the completion to record.
 */
import type { Logger } from 'pino';
import { isExpoError, isRetryable } from '../protocol/errors.ts';
import { artifactNameProblem } from '../protocol/domain.ts';
import { LIMITS, type ArtifactProblem, type AssignedBuild } from '../protocol/schemas.ts';
import type { Clock } from '../sys/clock.ts';
import { RawBody, isAttemptOver } from './controller-client.ts';
import type { RunnerClient, RunnerWorkspace } from './runner-ports.ts';

/** How often one artifact upload is retried while the controller is away, and its backoff (ms): p-retry's former settings. */
const ARTIFACT_RETRIES = 5;
const ARTIFACT_MIN_DELAY_MS = 1000;
const ARTIFACT_MAX_DELAY_MS = 10_000;

/** One attempt's artifact collection: where from, where to, and how to say what happened. */
export interface ArtifactRun {
  build: AssignedBuild;
  lease: string;
  workspace: Pick<RunnerWorkspace, 'findArtifacts' | 'openArtifact'>;
  client: Pick<RunnerClient, 'uploadArtifact'>;
  /** Runs the retries' backoff. */
  clock: Clock;
  /** Jitter of the backoff, in [0, 1). */
  random: () => number;
  log: Logger;
  /** The attempt's: aborting ends the collection (it then returns null). */
  signal: AbortSignal;
  /** A line for the build log. */
  note: (line: string) => void;
  /** The controller answered 409: the attempt is over. */
  onAttemptOver: (detail: string) => void;
}

/** The build's declared artifacts as patterns with their `required` flag; a pattern declared twice is one, required if either is. */
function declaredArtifacts(specs: AssignedBuild['artifacts']): { pattern: string; required: boolean }[] {
  const byPattern = new Map<string, boolean>();
  for (const s of specs) {
    const [pattern, required] = typeof s === 'string' ? [s, false] : [s.path, s.required === true];
    byPattern.set(pattern, (byPattern.get(pattern) ?? false) || required);
  }
  return [...byPattern].map(([pattern, required]) => ({ pattern, required }));
}

/** A matched file's artifact name: its path relative to work/, without `.` or empty segments (`./out//a` → `out/a`). */
const artifactNameOf = (file: string): string =>
  file
    .split('/')
    .filter((s) => s !== '' && s !== '.')
    .join('/');

/** The problems field of a completion: only when there are some, so a controller that predates it hears the same completion as before. */
export const problemsField = (problems: ArtifactProblem[]): { artifactProblems?: ArtifactProblem[] } =>
  problems.length === 0 ? {} : { artifactProblems: problems.slice(0, LIMITS.maxArtifactProblems) };

/** Shortens text to the schema's bound for a problem's message (or name). */
export const clip = (text: string, max = 1024): string => (text.length <= max ? text : `${text.slice(0, max - 1)}…`);

/**
 * Uploads the files the build's artifact patterns match, while the monitor still keeps the
 * build alive, each under its path relative to work/ (`ios/build/App.ipa`: two files with one
 * base name stay two artifacts). Each upload is retried with a fresh stream while the
 * controller is away or failing (5xx). Nothing is lost without a word: a pattern that matched
 * nothing, a file that could not be stored — each is noted in the log and returned as a
 * problem, which the completion records on the build. Null when the attempt ended meanwhile.
 */
export async function collectArtifacts(r: ArtifactRun): Promise<ArtifactProblem[] | null> {
  const { build, workspace: ws, note } = r;
  const declared = declaredArtifacts(build.artifacts);
  const problems: ArtifactProblem[] = [];
  if (r.signal.aborted) return null;
  if (declared.length === 0) return problems;
  const problem = (p: ArtifactProblem) => {
    problems.push(p);
    note(`artifact${p.required ? ' (required)' : ''} ${p.name === undefined ? p.pattern : `${p.name} (${p.pattern})`} was not stored: ${p.reason}: ${p.message}`);
  };
  let found: Map<string, string[]>;
  try {
    found = await ws.findArtifacts(declared.map((d) => d.pattern));
  } catch (err) {
    for (const d of declared) problem({ pattern: d.pattern, reason: 'upload_failed', required: d.required, message: clip(`could not look for it in the VM: ${(err as Error).message}`) });
    return problems;
  }
  const stored = new Set<string>();
  for (const d of declared) {
    const files = found.get(d.pattern) ?? [];
    if (files.length === 0) problem({ pattern: d.pattern, reason: 'no_match', required: d.required, message: 'no file matches this pattern in the work directory' });
    for (const file of files) {
      const name = artifactNameOf(file);
      const bad = artifactNameProblem(name);
      if (bad !== null) {
        problem({ pattern: d.pattern, name: clip(name, 2048), reason: 'invalid_name', required: d.required, message: bad });
        continue;
      }
      // Two patterns matching one file: one artifact.
      if (stored.has(name)) continue;
      try {
        const up = await upload(r, file, name);
        stored.add(name);
        note(`artifact ${name}: ${up.sizeBytes} bytes, sha256 ${up.sha256}`);
      } catch (err) {
        if (isAttemptOver(err)) {
          r.onAttemptOver((err as Error).message);
          return null;
        }
        if (r.signal.aborted) return null;
        const tooLarge = isExpoError(err, 'HTTP_STATUS') && (err.details as { code?: string }).code === 'API_BODY_TOO_LARGE';
        problem({ pattern: d.pattern, name, reason: tooLarge ? 'too_large' : 'upload_failed', required: d.required, message: clip((err as Error).message) });
      }
    }
  }
  return problems;
}

/**
 * Uploads one artifact from a fresh stream, retried while the controller's call fails in a way the
 * error table calls retryable (`isRetryable`: away, 5xx, 408, 429), not when reading the file in
 * the VM fails (the VM's trouble is the attempt's, not the upload's): up to 5 retries, backoff 1 s doubling to 10 s, with jitter ×1–2.
 * Rejects with the last error, or with the abort reason once the attempt is aborted.
 */
async function upload(r: ArtifactRun, file: string, name: string): Promise<{ sizeBytes: number; sha256: string }> {
  const { build, lease, signal } = r;
  for (let attempt = 1; ; attempt++) {
    signal.throwIfAborted();
    try {
      const { stream, sizeBytes } = await r.workspace.openArtifact(file);
      const stored = await r.client.uploadArtifact(build.id, lease, name, new RawBody(stream, sizeBytes));
      // As p-retry did: an upload that lands after the attempt was aborted ends the collection all the same.
      signal.throwIfAborted();
      return stored;
    } catch (err) {
      signal.throwIfAborted();
      if (!(isExpoError(err) && err.code.startsWith('HTTP_') && isRetryable(err.code)) || attempt > ARTIFACT_RETRIES) throw err;
      r.log.warn({ buildId: build.id, artifact: name, attempt, err: err.message }, 'artifact upload failed; retrying');
      r.note(`artifact ${name}: upload ${attempt} failed (${err.message}); retrying`);
      const delayMs = Math.min(ARTIFACT_MAX_DELAY_MS, Math.round((r.random() + 1) * ARTIFACT_MIN_DELAY_MS * 2 ** (attempt - 1)));
      await r.clock.sleep(delayMs, signal);
    }
  }
}
