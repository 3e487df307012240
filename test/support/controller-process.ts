/**
 * Runs the controller as a real child process (`node src/cli.ts controller …`), for tests that
 * need real signals, a real port and a real restart. `stop` and `kill` always reap the process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

export const CLI = fileURLToPath(new URL('../../src/cli.ts', import.meta.url));

export interface ControllerProcess {
  url: string;
  port: number;
  proc: ChildProcess;
  /** Every line the process printed so far (pino JSON on stdout, anything on stderr). */
  output: string[];
  /** Sends a signal and waits for the exit; resolves with the exit code (or signal name). */
  stop: (signal?: NodeJS.Signals) => Promise<number | string>;
}

export interface ControllerProcessOptions {
  dbPath: string;
  apiKey: string;
  port?: number;
  heartbeatTimeoutS?: number;
  extraArgs?: string[];
  env?: NodeJS.ProcessEnv;
}

const running = new Set<ChildProcess>();

export async function startControllerProcess(o: ControllerProcessOptions): Promise<ControllerProcess> {
  const args = [CLI, 'controller', '--db', o.dbPath, '--api-key', o.apiKey, '--port', String(o.port ?? 0), '--host', '127.0.0.1'];
  if (o.heartbeatTimeoutS !== undefined) args.push('--heartbeat-timeout', String(o.heartbeatTimeoutS));
  args.push(...(o.extraArgs ?? []));
  const proc = spawn(process.execPath, args, { env: { ...process.env, ...o.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(proc);
  const exited = once(proc, 'exit').then(([code, signal]) => {
    running.delete(proc);
    return (code ?? signal) as number | string;
  });
  const output: string[] = [];
  createInterface({ input: proc.stderr! }).on('line', (l) => output.push(l));
  const url = await new Promise<string>((resolve, reject) => {
    // Generous: a busy machine can take many seconds to start Node and compile the TypeScript.
    const timer = setTimeout(() => reject(new Error(`controller did not start:\n${output.join('\n')}`)), 90_000);
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      output.push(line);
      const m = /controller listening on (http:\/\/[^"\s]+)/.exec(line);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`controller exited (${code}) before listening:\n${output.join('\n')}`));
    });
  });
  return {
    url,
    port: Number(new URL(url).port),
    proc,
    output,
    stop: async (signal = 'SIGTERM') => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
}

/** Kills every controller a test started and did not stop (call from afterEach). */
export async function killAllControllers(): Promise<void> {
  await Promise.all(
    [...running].map(async (p) => {
      p.kill('SIGKILL');
      if (p.exitCode === null && p.signalCode === null) await once(p, 'exit');
    }),
  );
}
