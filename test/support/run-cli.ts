/**
 * Runs `expo-worker ARGS` (src/cli.ts under this Node) as a child process to its end and answers
 * its exit code and output: for the one-shot commands (backup, migrate) the tests drive as a
 * user would.
 */
import { spawn } from 'node:child_process';
import { CLI } from './controller-process.ts';

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `env` is added to this process's environment; `cwd` is where the command runs. */
export const runCli = (args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv }): Promise<CliResult> =>
  new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...opts.env }, cwd: opts.cwd });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.once('error', reject);
    p.once('close', (code) => resolve({ code, stdout, stderr }));
  });
