/**
 * A build's workspace inside its VM, driven over SSH: `~/.expo-worker/builds/<id>-<attempt>/`
 * holding the build's env file, one script per step, `work/` (the steps' working directory),
 * the progress file vm-monitor.sh reads, and the monitor's log.
 *
 * Secrets never reach a command line: the build's env and the monitor's build token travel as
 * files over SFTP (mode 0600) and are sourced remotely. Each step runs in its own process group
 * (bash job control), its pid in `step.pid`, so stopping a step — cancel, timeout, shutdown —
 * signals every process it started: TERM, a grace, then KILL.
 */
import { shellQuote, type SshSession } from '../sys/ssh.ts';
import type { Step } from '../protocol/schemas.ts';

/** Runs one step: sources the env, enters work/, starts the step as its own process group and waits. */
const RUN_STEP = `#!/bin/bash
# usage: run-step.sh DIR N — written by expo-worker; runs step N of the build in DIR.
dir=$1
n=$2
set -a
. "$dir/env"
set +a
export EXPO_BUILD_DIR="$dir" EXPO_PROGRESS_FILE="$dir/progress"
cd "$dir/work" || exit 90
set -m
/bin/bash "$dir/step-$n.sh" </dev/null &
pid=$!
echo "$pid" >"$dir/step.pid"
wait "$pid"
`;

const exportLine = (name: string, value: string): string => `${name}=${shellQuote([value])}`;

export interface MonitorLaunch {
  /** The remote command that runs the monitor (installed or uploaded path). */
  script: string;
  controllerUrl: string;
  buildId: string;
  workerId: string;
  buildToken: string;
  intervalS: number;
}

export interface RemoteWorkspaceOptions {
  /** Time per housekeeping command (mkdir, kill, progress), ms. Default 15 000. */
  commandTimeoutMs?: number;
}

export class RemoteWorkspace {
  /** Relative to the VM user's home (SFTP and `$HOME` agree on it). */
  readonly dir: string;
  private readonly session: SshSession;
  private readonly timeoutMs: number;
  private monitorPid: number | null = null;

  constructor(session: SshSession, buildId: string, attempt: number, options: RemoteWorkspaceOptions = {}) {
    this.session = session;
    this.dir = `.expo-worker/builds/${buildId}-${attempt}`;
    this.timeoutMs = options.commandTimeoutMs ?? 15_000;
  }

  private get abs(): string {
    return `"$HOME"/${this.dir}`;
  }

  /** A housekeeping command; throws when it exits non-zero. */
  private async sh(command: string): Promise<string> {
    const r = await this.session.exec(command, { timeoutMs: this.timeoutMs });
    if (r.exitCode !== 0) throw new Error(`'${command}' exited ${r.exitCode ?? r.signal}: ${r.stderr.trim().slice(-300)}`);
    return r.stdout;
  }

  async prepare(env: Record<string, string>, steps: readonly Step[]): Promise<void> {
    await this.sh(`mkdir -p ${this.abs}/work && chmod 700 ${this.abs}`);
    await this.session.upload({ data: Object.entries(env).map(([k, v]) => exportLine(k, v)).join('\n') + '\n' }, `${this.dir}/env`, { mode: 0o600 });
    await this.session.upload({ data: RUN_STEP }, `${this.dir}/run-step.sh`, { mode: 0o700 });
    for (const [i, step] of steps.entries()) {
      await this.session.upload({ data: `set -e\n${step.run}\n` }, `${this.dir}/step-${i}.sh`, { mode: 0o600 });
    }
  }

  /**
   * Runs step `index`; resolves with its exit status (128+n when killed by signal n), or null
   * when the channel ended without one — the session or the VM died under it.
   */
  async runStep(index: number, io: { onOutput: (chunk: Buffer) => void; signal?: AbortSignal }): Promise<number | null> {
    const r = await this.session.exec(`/bin/bash ${this.abs}/run-step.sh ${this.abs} ${index}`, {
      onStdout: io.onOutput,
      onStderr: io.onOutput,
      signal: io.signal,
      maxCaptureBytes: 0,
    });
    return r.exitCode;
  }

  /** Whether the VM still answers over this session. */
  async alive(timeoutMs: number): Promise<boolean> {
    try {
      const r = await this.session.exec('echo alive', { timeoutMs });
      return r.exitCode === 0 && r.stdout.trim() === 'alive';
    } catch {
      return false;
    }
  }

  /** Stops the running step's whole process group: TERM, up to `graceMs`, then KILL. */
  async stopStep(graceMs: number): Promise<void> {
    const pid = `$(cat ${this.abs}/step.pid 2>/dev/null)`;
    const graceS = Math.max(1, Math.ceil(graceMs / 1000));
    await this.session.exec(
      `p=${pid}; [ -n "$p" ] || exit 0; kill -TERM -- -"$p" 2>/dev/null || exit 0; ` +
        `i=0; while kill -0 -- -"$p" 2>/dev/null && [ $i -lt ${graceS * 10} ]; do sleep 0.1; i=$((i+1)); done; ` +
        `kill -KILL -- -"$p" 2>/dev/null; exit 0`,
      { timeoutMs: graceMs + this.timeoutMs },
    );
  }

  async writeProgress(percent: number): Promise<void> {
    await this.sh(`printf '%s\\n' ${Math.round(percent)} > ${this.abs}/progress`);
  }

  /** The version `script --version` prints in the VM, or null when it is missing or fails. */
  async monitorVersion(script: string): Promise<string | null> {
    const r = await this.session.exec(`${shellQuote([script])} --version 2>/dev/null`, { timeoutMs: this.timeoutMs });
    return r.exitCode === 0 ? r.stdout.trim() : null;
  }

  /** Uploads a monitor script into the workspace; returns its remote path. */
  async uploadMonitor(contents: Buffer): Promise<string> {
    await this.session.upload({ data: contents }, `${this.dir}/vm-monitor.sh`, { mode: 0o700 });
    return `${this.dir}/vm-monitor.sh`;
  }

  /** Starts vm-monitor.sh in the background with its settings in the environment; returns its pid. */
  async startMonitor(m: MonitorLaunch): Promise<number> {
    const env = {
      EXPO_MONITOR_CONTROLLER: m.controllerUrl,
      EXPO_MONITOR_BUILD_ID: m.buildId,
      EXPO_MONITOR_WORKER_ID: m.workerId,
      EXPO_MONITOR_TOKEN: m.buildToken,
      EXPO_MONITOR_INTERVAL_S: String(m.intervalS),
      EXPO_MONITOR_PROGRESS_FILE: `${this.dir}/progress`,
    };
    await this.session.upload({ data: Object.entries(env).map(([k, v]) => exportLine(k, v)).join('\n') + '\n' }, `${this.dir}/monitor.env`, { mode: 0o600 });
    const script = m.script.startsWith('/') ? shellQuote([m.script]) : `"$HOME"/${m.script}`;
    const out = await this.sh(
      `cd "$HOME" && set -a && . ${this.dir}/monitor.env && set +a && rm -f ${this.dir}/monitor.env && ` +
        // Braces: only the monitor goes to the background, with every fd off the SSH channel.
        `{ nohup ${script} >${this.dir}/monitor.log 2>&1 </dev/null & echo $!; }`,
    );
    const pid = Number(out.trim());
    if (!Number.isInteger(pid) || pid <= 0) throw new Error(`the monitor did not start (got '${out.trim()}')`);
    // It must still be alive a moment later: a bad argument or missing curl ends it at once.
    await new Promise((r) => setTimeout(r, 300));
    const alive = await this.session.exec(`kill -0 ${pid}`, { timeoutMs: this.timeoutMs });
    if (alive.exitCode !== 0) {
      const log = await this.session.exec(`tail -n 5 ${this.abs}/monitor.log`, { timeoutMs: this.timeoutMs });
      throw new Error(`the monitor exited at once: ${log.stdout.trim()}`);
    }
    this.monitorPid = pid;
    return pid;
  }

  async stopMonitor(): Promise<void> {
    if (this.monitorPid === null) return;
    await this.session.exec(`kill -TERM ${this.monitorPid} 2>/dev/null; exit 0`, { timeoutMs: this.timeoutMs });
    this.monitorPid = null;
  }
}
