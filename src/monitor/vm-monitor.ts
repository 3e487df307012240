/**
 * vm-monitor.sh, the in-VM heartbeat of a build: everything about it in one place — the script
 * the agent ships (vm-image/vm-monitor.sh) and its version, the settings it reads
 * (`EXPO_MONITOR_*`, from a 0600 file, never on a command line), which script runs (the image's
 * or the agent's own), the launch command with its "still alive a moment later" check, its pid,
 * and stopping it.
 *
 * States of one build's monitor: `idle` (nothing started) → `probed` (the image's installed
 * version is known, so which script runs is decided) → `running` (launched, its pid known) →
 * `stopped`. A launch that fails leaves it `probed`; `stop` is a no-op unless `running`.
 *
 * The monitor starts inside the build's workspace (the {@link MonitorWorkspace} port, which
 * `RemoteWorkspace` implements): the version probe rides on the command that creates the
 * workspace, and the monitor's files and launch ride on the workspace's single upload and setup
 * command, so starting it costs no SSH round trip of its own.
 */
import { existsSync, readFileSync } from 'node:fs';
import { shellQuote, type SshSession } from '../sys/ssh.ts';

/** Where the base image installs vm-monitor.sh. */
export const INSTALLED_MONITOR_PATH = '/usr/local/bin/vm-monitor.sh';

/** What vm-monitor.sh prints once its settings passed its checks (its `say "Starting for build …"`). */
const STARTED_LINE = '^\\[VM Monitor\\] Starting for build';
/** Ticks of 20 ms the launch waits for {@link STARTED_LINE}: 5 s. */
const STARTED_WAIT_TICKS = 250;

/** How long stopping the monitor may take, ms. */
const STOP_TIMEOUT_MS = 5000;

/** The monitor script the agent ships, and where the image keeps its own copy. */
export interface MonitorImage {
  /** The agent's own vm-monitor.sh, uploaded when the image has none or another version. */
  contents: Buffer;
  /** The version on the agent's script's VM_MONITOR_VERSION= line. */
  version: string;
  /** The installed monitor's path in the image. */
  installedPath: string;
}

/** What one build's monitor is told (its `EXPO_MONITOR_*` settings). */
export interface MonitorSettings {
  /** The controllers' URLs as the VM sees them, tried in turn when one cannot be reached (vm-monitor.sh ≥ 1.2.0). */
  controllerUrls: readonly string[];
  buildId: string;
  workerId: string;
  buildToken: string;
  /** Seconds between heartbeats. */
  intervalS: number;
  /** How long one heartbeat request may take, s. */
  requestTimeoutS: number;
}

/** A file the workspace writes for the monitor, relative to the VM user's home. */
export interface MonitorFile {
  path: string;
  contents: string;
  mode: number;
}

/** What the monitor needs of the build's workspace in the VM. */
export interface MonitorWorkspace {
  /** The workspace's directory, relative to the VM user's home. */
  readonly dir: string;
  /** Creates the workspace, then runs `probe` in the same command; its stdout. */
  open(probe: string): Promise<string>;
  /** Writes the build's files and `files` in one upload, then runs `launch` (from "$HOME"); its stdout. */
  setup(extra: { files: readonly MonitorFile[]; launch: string }): Promise<string>;
}

export type MonitorState = 'idle' | 'probed' | 'running' | 'stopped';

/** The vm-monitor.sh shipped with this agent (vm-image/ beside src/ and dist/src/), and its version. */
export function loadMonitorScript(): { contents: Buffer; version: string } {
  for (const rel of ['../../vm-image/vm-monitor.sh', '../../../vm-image/vm-monitor.sh']) {
    const url = new URL(rel, import.meta.url);
    if (!existsSync(url)) continue;
    const contents = readFileSync(url);
    const m = /^VM_MONITOR_VERSION=["']?([^"'\s]+)["']?\s*$/m.exec(contents.toString('utf8'));
    if (!m) throw new Error(`${url.pathname} has no VM_MONITOR_VERSION line`);
    return { contents, version: m[1]! };
  }
  throw new Error('vm-image/vm-monitor.sh not found beside the agent');
}

/** The lines of a sourced env file: `NAME='value'`, one a line. */
export const envFileOf = (vars: Record<string, string>): string =>
  Object.entries(vars)
    .map(([k, v]) => `${k}=${shellQuote([v])}`)
    .join('\n');

/** The monitor's settings as its environment; the progress file is relative to "$HOME", where it starts. */
export function monitorEnv(s: MonitorSettings, dir: string): Record<string, string> {
  return {
    // Space-separated: config URLs never hold a space (they are validated), and one URL reads as before.
    EXPO_MONITOR_CONTROLLER: s.controllerUrls.join(' '),
    EXPO_MONITOR_BUILD_ID: s.buildId,
    EXPO_MONITOR_WORKER_ID: s.workerId,
    EXPO_MONITOR_TOKEN: s.buildToken,
    EXPO_MONITOR_INTERVAL_S: String(s.intervalS),
    EXPO_MONITOR_CURL_TIMEOUT_S: String(s.requestTimeoutS),
    EXPO_MONITOR_PROGRESS_FILE: `${dir}/progress`,
  };
}

/** Prints the installed monitor's version, or nothing when it is missing or broken; never fails. */
export const versionProbe = (installedPath: string): string => `{ ${shellQuote([installedPath])} --version 2>/dev/null || true; }`;

/**
 * From "$HOME": loads the settings (then deletes their file), starts the monitor in the
 * background and prints its pid — or, when it is already gone a moment later, its log's tail
 * and exits 3.
 */
export function launchCommand(dir: string, script: string): string {
  return (
    `cd "$HOME" && ` +
    `set -a && . ${dir}/monitor.env && set +a && rm -f ${dir}/monitor.env && ` +
    // Braces: only the monitor goes to the background, with every fd off the SSH channel.
    // It must get past its own checks (a bad argument or a missing curl ends it at once): wait
    // for its "Starting for build" line — usually a few ms, so no fixed pause on the build's
    // path — or for it to exit; after 5 s a monitor still alive counts as started.
    `{ nohup ${script} >${dir}/monitor.log 2>&1 </dev/null & pid=$!; i=0; ` +
    `while kill -0 "$pid" 2>/dev/null && ! grep -q '${STARTED_LINE}' ${dir}/monitor.log 2>/dev/null && [ $i -lt ${STARTED_WAIT_TICKS} ]; do sleep 0.02; i=$((i+1)); done; ` +
    `if kill -0 "$pid" 2>/dev/null; then echo "$pid"; else echo "the monitor exited at once:"; tail -n 5 ${dir}/monitor.log; exit 3; fi; }`
  );
}

/** The pid the launch command printed; throws when it printed anything else. */
export function parseMonitorPid(out: string): number {
  const pid = Number(out.trim());
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`the monitor did not start (got '${out.trim()}')`);
  return pid;
}

/** Stops the monitor; succeeds even when it is already gone. */
export const stopCommand = (pid: number): string => `kill -TERM ${pid} 2>/dev/null; exit 0`;

/** One build's vm-monitor.sh. */
export class VmMonitor {
  private readonly shell: Pick<SshSession, 'exec'>;
  private readonly image: MonitorImage;
  private readonly settings: MonitorSettings;
  private stateValue: MonitorState = 'idle';
  private pid: number | null = null;

  /** `shell`: the build's SSH session (to stop the monitor). */
  constructor(shell: Pick<SshSession, 'exec'>, image: MonitorImage, settings: MonitorSettings) {
    this.shell = shell;
    this.image = image;
    this.settings = settings;
  }

  get state(): MonitorState {
    return this.stateValue;
  }

  /**
   * Opens the workspace, reads the image's monitor version, and launches the monitor — the
   * image's when its version is the agent's, else the agent's own, uploaded with the workspace
   * (said through `note`). Returns its pid; throws when it did not start.
   */
  async start(ws: MonitorWorkspace, note: (line: string) => void): Promise<number> {
    if (this.stateValue !== 'idle') throw new Error(`the monitor was already started (${this.stateValue})`);
    const out = (await ws.open(versionProbe(this.image.installedPath))).trim();
    const installed = out === '' ? null : out;
    this.stateValue = 'probed';
    const upload = installed !== this.image.version;
    if (upload) note(`vm-monitor.sh in the image is ${installed ?? 'missing'}; using the agent's ${this.image.version}`);
    const files: MonitorFile[] = [{ path: `${ws.dir}/monitor.env`, contents: envFileOf(monitorEnv(this.settings, ws.dir)), mode: 0o600 }];
    if (upload) files.push({ path: `${ws.dir}/vm-monitor.sh`, contents: this.image.contents.toString('utf8'), mode: 0o700 });
    const script = upload ? `"$HOME"/${ws.dir}/vm-monitor.sh` : shellQuote([this.image.installedPath]);
    const pid = parseMonitorPid(await ws.setup({ files, launch: launchCommand(ws.dir, script) }));
    this.pid = pid;
    this.stateValue = 'running';
    return pid;
  }

  /** Stops the monitor when it runs; its heartbeats end with it. */
  async stop(): Promise<void> {
    if (this.stateValue !== 'running' || this.pid === null) return;
    await this.shell.exec(stopCommand(this.pid), { timeoutMs: STOP_TIMEOUT_MS });
    this.pid = null;
    this.stateValue = 'stopped';
  }
}
