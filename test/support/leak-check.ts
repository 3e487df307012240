/**
 * The per-file leak check, a vitest `setupFiles` entry: vitest evaluates it before each test file,
 * in that file's own worker process (the default pool, forks, isolates every file), so it can
 * watch one file at a time:
 *
 * - It marks the file before the file is imported: EXPO_WORKER_TEST_RUN (global-setup.ts) becomes
 *   `<run id>/<file>`, and every process the file starts inherits it.
 * - It records every directory the file makes with `mkdtemp` (fs, fs/promises, callback form).
 * - After the file — after its afterAll hooks, beforeAll cleanups and fixtures, which the
 *   outermost aroundAll (registered here, before the file's own hooks) wraps — it fails the file
 *   if a process with its mark is still alive {@link LEAK_WAIT_MS} later, or a directory it made
 *   still exists, naming the file, the command lines and the paths. It then kills those processes
 *   and removes those directories, so that the files after it start clean.
 *
 * Temp files made other ways (`mktemp` in a script, a fixed name under tmpdir) are not tracked.
 * With `isolate: false` a worker keeps process.env between files, so the mark is reset after
 * each file and the run id is always taken from the part before the first `/`.
 */
import fs, { existsSync, rmSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { relative, resolve } from 'node:path';
import { aroundAll, expect } from 'vitest';
import { survivors, TEST_MARK } from './global-setup.ts';

/** How long a file's processes may take to exit after its last hook (sim cleanup SIGKILLs after 2 s). */
const LEAK_WAIT_MS = 5000;

const made = mkdtempRecorder();
made.clear();

const file = relative(process.cwd(), expect.getState().testPath ?? 'unknown-file');
const runId = (process.env[TEST_MARK] ?? `${process.pid}-${Date.now()}`).split('/')[0];
const mark = `${runId}/${file}`;
process.env[TEST_MARK] = mark;

aroundAll(async (runSuite) => {
  process.env[TEST_MARK] = mark;
  try {
    await runSuite();
  } finally {
    process.env[TEST_MARK] = runId;
  }
  const leaked = await survivors((p) => p.mark === mark, LEAK_WAIT_MS);
  const dirs = [...made].filter((dir) => existsSync(dir));
  made.clear();
  for (const p of leaked) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      // it ended after all
    }
  }
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  const problems: string[] = [];
  if (leaked.length > 0) {
    problems.push(
      `${file} left ${leaked.length} process(es) running ${LEAK_WAIT_MS / 1000} s after its last hook (now killed):`,
      ...leaked.map((p) => `  ${p.pid}: ${p.cmdline}`),
    );
  }
  if (dirs.length > 0) {
    problems.push(`${file} left ${dirs.length} temp dir(s) it made (now removed):`, ...dirs.map((d) => `  ${d}`));
  }
  if (problems.length > 0) throw new Error(problems.join('\n'));
}, LEAK_WAIT_MS + 10_000);

/**
 * Wraps fs's mkdtemp functions (once per process) so that every directory they make is added to
 * the returned set; syncBuiltinESMExports() carries the wrappers to `import { … } from 'node:fs'`.
 */
function mkdtempRecorder(): Set<string> {
  const key = Symbol.for('expo-worker.leak-check.mkdtemp');
  const store = globalThis as { [key]?: Set<string> };
  const existing = store[key];
  if (existing !== undefined) return existing;
  const dirs = new Set<string>();
  store[key] = dirs;
  const record = (dir: unknown): void => void dirs.add(resolve(String(dir)));

  const { mkdtempSync, mkdtemp } = fs;
  const mkdtempAsync = fs.promises.mkdtemp;
  fs.mkdtempSync = ((...args: Parameters<typeof mkdtempSync>) => {
    const dir = mkdtempSync(...args);
    record(dir);
    return dir;
  }) as typeof mkdtempSync;
  fs.promises.mkdtemp = (async (...args: Parameters<typeof mkdtempAsync>) => {
    const dir = await mkdtempAsync(...args);
    record(dir);
    return dir;
  }) as typeof mkdtempAsync;
  fs.mkdtemp = ((...args: unknown[]) => {
    const callback = args.pop() as (err: NodeJS.ErrnoException | null, dir?: unknown) => void;
    Reflect.apply(mkdtemp, fs, [
      ...args,
      (err: NodeJS.ErrnoException | null, dir?: unknown) => {
        if (err === null) record(dir);
        callback(err, dir);
      },
    ]);
  }) as typeof mkdtemp;
  syncBuiltinESMExports();
  return dirs;
}
