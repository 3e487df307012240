/**
 * Parsing a pipeline file away from the controller's event loop. A file comes from a repository
 * anyone with push access writes, and a hostile one within the size cap can still cost seconds of
 * CPU in the YAML parser; parsed on the main thread, that would stall every heartbeat and claim
 * of the farm. So each file is parsed in a worker thread with a heap cap and a time limit: a file
 * that takes longer is refused with a clear error, and the thread is terminated.
 */
import { Worker } from 'node:worker_threads';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ParseResult } from './pipeline.ts';

/** The thread's module beside this one, with this module's own extension (.ts from src/, .js from dist/). */
const THREAD = new URL(`./pipeline-thread${extname(fileURLToPath(import.meta.url))}`, import.meta.url);

export interface IsolatedParseOptions {
  /** How long parsing may take, ms. Default 10 000. */
  timeoutMs?: number;
  /** The thread's heap cap, MB. Default 128. */
  maxHeapMb?: number;
}

/** `parsePipeline(text)` in a worker thread; a parse that runs out of time or memory is an error result, never a throw. */
export function parsePipelineIsolated(text: string, o: IsolatedParseOptions = {}): Promise<ParseResult> {
  const timeoutMs = o.timeoutMs ?? 10_000;
  return new Promise((resolve) => {
    let settled = false;
    const worker = new Worker(THREAD, { workerData: text, resourceLimits: { maxOldGenerationSizeMb: o.maxHeapMb ?? 128 } });
    const done = (result: ParseResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      void worker.terminate();
      resolve(result);
    };
    const refuse = (message: string): void => done({ ok: false, errors: [{ line: 1, column: 1, path: '', message }] });
    const timer = setTimeout(() => refuse(`the file took longer than ${timeoutMs / 1000} s to parse; it is not read`), timeoutMs);
    worker.once('message', (m: ParseResult) => done(m));
    worker.once('error', (err) => refuse(`the file could not be parsed: ${err.message}`));
    worker.once('exit', (code) => refuse(`the parser stopped (exit ${code}) before it finished`));
  });
}
