/** What every subcommand receives. */
import { writeSync } from 'node:fs';
import type { Parsed } from './args.ts';
import type { Home } from './home.ts';
import type { Knobs } from './knobs.ts';

export interface Ctx {
  home: Home;
  env: NodeJS.ProcessEnv;
  knobs: Knobs;
  args: Parsed;
}

/**
 * Writes to stdout synchronously: tart's stdout is line-buffered even when piped, and a line
 * printed just before exit (`Stopping VM...`) must not be lost.
 */
export function out(line: string): void {
  writeSync(1, `${line}\n`);
}

export function err(line: string): void {
  writeSync(2, `${line}\n`);
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
