/** Helpers shared by the simulator's contract tests. */
import { execFile } from 'node:child_process';
import type { TartResult, TartSim } from '../support/tart-sim.ts';

/** Runs `command` in the VM at `ip` over real OpenSSH; never throws. */
export function ssh(sim: TartSim, ip: string, command: string, timeoutMs = 10_000, options: string[] = []): Promise<TartResult> {
  return new Promise((resolve) => {
    execFile('ssh', [...sim.sshArgs(ip, options), command], { timeout: timeoutMs, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const e = err as (Error & { code?: unknown; signal?: NodeJS.Signals | null }) | null;
      resolve({ code: e === null ? 0 : typeof e.code === 'number' ? e.code : null, signal: e?.signal ?? null, stdout, stderr });
    });
  });
}

/** Polls `check` every 50 ms until it returns true; throws after `timeoutMs`. */
export async function waitUntil(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The VM's state as `tart list --format json` reports it ('absent' when not listed). */
export async function stateOf(sim: TartSim, name: string): Promise<string> {
  const r = await sim.tart(['list', '--format', 'json']);
  const vm = (JSON.parse(r.stdout) as Array<{ Name: string; State: string }>).find((v) => v.Name === name);
  return vm?.State ?? 'absent';
}

/** Starts `tart run NAME` and waits until it is running and answers SSH; returns its IP. */
export async function bootVm(sim: TartSim, name: string, extraArgs: string[] = []): Promise<{ ip: string; run: ReturnType<TartSim['startRun']> }> {
  const run = sim.startRun(name, extraArgs);
  const ipResult = await sim.tart(['ip', name, '--wait', '10']);
  if (ipResult.code !== 0) throw new Error(`tart ip failed: ${ipResult.stderr}`);
  const ip = ipResult.stdout.trim();
  await waitUntil(`ssh into ${name}`, async () => (await ssh(sim, ip, 'true', 3000)).code === 0);
  return { ip, run };
}
