/**
 * A build's workspace inside its VM, driven over SSH: `~/.expo-worker/builds/<id>-<attempt>/`
 * holding the build's env file, one script per step, `work/` (the steps' working directory),
 * the progress file vm-monitor.sh reads, and the monitor's log. Every SSH round trip is on the
 * path from claim to first step, so setting up costs two commands and one upload.
 *
 * Secrets never reach a command line: the build's env and the monitor's build token travel
 * inside a file uploaded over SFTP (mode 0600) and are sourced remotely. The monitor itself
 * (its files, launch and stop) is src/monitor/vm-monitor.ts's: this workspace only carries its
 * files in the same upload and its launch in the same command (the MonitorWorkspace port). Each step runs in its
 * own process group (bash job control), its pid in `step.pid`, so stopping a step — cancel,
 * timeout, shutdown — signals every process it started: TERM, a grace, then KILL.
 */
import { randomBytes } from 'node:crypto';
import { shellQuote, type SshSession } from '../sys/ssh.ts';
import type { Step } from '../protocol/schemas.ts';
import { envFileOf, type MonitorFile, type MonitorWorkspace, type VmMonitor } from '../monitor/vm-monitor.ts';
import { CHECKOUT_CREDENTIAL_FILE, CHECKOUT_SCRIPT, CHECKOUT_SCRIPT_FILE, checkoutCommand, checkoutProblem, cloneOrigin, type CheckoutSpec } from './checkout.ts';

/** Runs one step: records its starting progress, sources the env, enters work/, starts the step as its own process group, waits. */
const RUN_STEP = `#!/bin/bash
# usage: run-step.sh DIR N PROGRESS — written by expo-worker; runs step N of the build in DIR.
dir=$1
n=$2
printf '%s\\n' "$3" >"$dir/progress"
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

/** A script that writes each file (path relative to "$HOME") from a quoted here-document. */
function fileWriter(files: { path: string; contents: string; mode: number }[]): string {
  const all = files.map((f) => f.contents).join('\n');
  let tag: string;
  do tag = `EXPO_EOF_${randomBytes(8).toString('hex')}`;
  while (all.includes(tag));
  const parts = ['set -e', 'umask 077'];
  for (const f of files) {
    const body = f.contents.endsWith('\n') ? f.contents : `${f.contents}\n`;
    parts.push(`cat >"$HOME"/${f.path} <<'${tag}'\n${body}${tag}`, `chmod ${f.mode.toString(8)} "$HOME"/${f.path}`);
  }
  return `${parts.join('\n')}\n`;
}

export interface RemoteWorkspaceOptions {
  /** Time per housekeeping command (mkdir, kill, progress), ms. Default 15 000. */
  commandTimeoutMs?: number;
  /** The build's vm-monitor, started with the workspace by {@link RemoteWorkspace.startMonitor}. Default: none. */
  monitor?: VmMonitor;
}

/** The build a workspace holds. */
export interface WorkspaceBuild {
  id: string;
  attempt: number;
  /** The build's env, secrets included (written to a 0600 file, sourced by each step). */
  env: Record<string, string>;
  steps: readonly Step[];
}

export class RemoteWorkspace implements MonitorWorkspace {
  /** Relative to the VM user's home (SFTP and `$HOME` agree on it). */
  readonly dir: string;
  private readonly session: SshSession;
  private readonly build: WorkspaceBuild;
  private readonly timeoutMs: number;
  private readonly monitor: VmMonitor | undefined;

  constructor(session: SshSession, build: WorkspaceBuild, options: RemoteWorkspaceOptions = {}) {
    this.session = session;
    this.build = build;
    this.dir = `.expo-worker/builds/${build.id}-${build.attempt}`;
    this.timeoutMs = options.commandTimeoutMs ?? 15_000;
    this.monitor = options.monitor;
  }

  private get abs(): string {
    return `"$HOME"/${this.dir}`;
  }

  /** A housekeeping command; throws when it exits non-zero. */
  private async sh(command: string): Promise<string> {
    const r = await this.session.exec(command, { timeoutMs: this.timeoutMs });
    if (r.exitCode !== 0) throw new Error(`'${command.slice(0, 80)}…' exited ${r.exitCode ?? r.signal}: ${(r.stdout + r.stderr).trim().slice(-300)}`);
    return r.stdout;
  }

  /** Creates the workspace (work/ inside, mode 0700), then runs `probe` — one command. Its stdout. */
  async open(probe: string): Promise<string> {
    return this.sh(`mkdir -p ${this.abs}/work && chmod 700 ${this.abs} && ${probe}`);
  }

  /**
   * Writes the build's files (env, steps, runner) and `extra.files` in one upload, then runs the
   * setup and `extra.launch` from "$HOME" — one command. Its stdout.
   */
  async setup(extra: { files: readonly MonitorFile[]; launch: string }): Promise<string> {
    const files = [
      { path: `${this.dir}/env`, contents: envFileOf(this.build.env), mode: 0o600 },
      { path: `${this.dir}/run-step.sh`, contents: RUN_STEP, mode: 0o700 },
      { path: `${this.dir}/progress`, contents: '0', mode: 0o600 },
      ...this.build.steps.map((step, i) => ({ path: `${this.dir}/step-${i}.sh`, contents: `set -e\n${step.run}`, mode: 0o600 })),
      ...extra.files,
    ];
    await this.session.upload({ data: fileWriter(files) }, `${this.dir}/setup.sh`, { mode: 0o600 });
    return this.sh(`/bin/bash ${this.abs}/setup.sh && rm -f ${this.abs}/setup.sh && ${extra.launch}`);
  }

  /** Sets up the workspace and starts the build's vm-monitor in it (see VmMonitor.start); returns its pid. */
  async startMonitor(note: (line: string) => void): Promise<number> {
    if (this.monitor === undefined) throw new Error('this workspace has no monitor to start');
    return this.monitor.start(this, note);
  }

  async stopMonitor(): Promise<void> {
    await this.monitor?.stop();
  }

  /**
   * Runs step `index`, first recording `progress`; resolves with its exit status (128+n when
   * killed by signal n), or null when the channel ended without one — the session or the VM
   * died under it.
   */
  async runStep(index: number, progress: number, io: { onOutput: (chunk: Buffer) => void; signal?: AbortSignal }): Promise<number | null> {
    const r = await this.session.exec(`/bin/bash ${this.abs}/run-step.sh ${this.abs} ${index} ${Math.round(progress)}`, {
      onStdout: io.onOutput,
      onStderr: io.onOutput,
      signal: io.signal,
      maxCaptureBytes: 0,
      // A step may leave a process running (a Metro server, say) that holds its output open.
      exitGraceMs: 2000,
    });
    return r.exitCode;
  }

  /**
   * Checks `spec`'s commit out into work/ (see checkout.ts): uploads the script and, when there
   * is one, the credential (0600, read and deleted by the script before git runs), then runs the
   * script, its output streamed. Its exit status, or null when the channel ended without one.
   * A checkout whose script never ran fails the attempt, so no step runs beside a credential file.
   */
  async checkout(spec: CheckoutSpec, credential: string | null, io: { onOutput: (chunk: Buffer) => void; signal?: AbortSignal }): Promise<number | null> {
    const problem = checkoutProblem(spec);
    const where = cloneOrigin(spec.url);
    if (problem !== null || 'problem' in where) throw new Error(`cannot check out: ${problem ?? 'bad clone URL'}`);
    await this.session.upload({ data: CHECKOUT_SCRIPT }, `${this.dir}/${CHECKOUT_SCRIPT_FILE}`, { mode: 0o700 });
    const credentialPath = `${this.dir}/${CHECKOUT_CREDENTIAL_FILE}`;
    if (credential !== null) await this.session.upload({ data: `${credential}\n` }, credentialPath, { mode: 0o600 });
    const r = await this.session.exec(checkoutCommand(this.abs, spec, where.origin), {
      onStdout: io.onOutput,
      onStderr: io.onOutput,
      signal: io.signal,
      maxCaptureBytes: 0,
    });
    return r.exitCode;
  }

  /**
   * The files each artifact pattern matches in work/, as the VM's shell names them (the patterns
   * were validated to plain path characters and `*` `?`, and are expanded unquoted on purpose).
   * Records are NUL-separated, so a file name holding a newline stays one (invalid) name instead
   * of two wrong ones. One command.
   */
  async findArtifacts(patterns: readonly string[]): Promise<Map<string, string[]>> {
    const loop = patterns.map((p) => `printf 'P%s\\0' ${shellQuote([p])}; for f in ${p}; do [ -f "$f" ] && printf 'F%s\\0' "$f"; done`).join('; ');
    const out = await this.sh(`cd ${this.abs}/work && { ${loop}; }; true`);
    const found = new Map<string, string[]>();
    let current: string[] = [];
    for (const record of out.split('\0')) {
      if (record.startsWith('P')) found.set(record.slice(1), (current = []));
      else if (record.startsWith('F')) current.push(record.slice(1));
    }
    return found;
  }

  /** Opens a file of work/ for reading. */
  openArtifact(path: string): ReturnType<SshSession['openRead']> {
    return this.session.openRead(`${this.dir}/work/${path}`);
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
    const graceTicks = Math.max(1, Math.ceil(graceMs / 100));
    await this.session.exec(
      `p=$(cat ${this.abs}/step.pid 2>/dev/null); [ -n "$p" ] || exit 0; kill -TERM -- -"$p" 2>/dev/null || exit 0; ` +
        `i=0; while kill -0 -- -"$p" 2>/dev/null && [ $i -lt ${graceTicks} ]; do sleep 0.1; i=$((i+1)); done; ` +
        `kill -KILL -- -"$p" 2>/dev/null; exit 0`,
      { timeoutMs: graceMs + this.timeoutMs },
    );
  }

  async writeProgress(percent: number): Promise<void> {
    await this.sh(`printf '%s\\n' ${Math.round(percent)} > ${this.abs}/progress`);
  }
}
