/**
 * `expo-worker doctor [--config PATH] [--json] [--learn-host-key]`: is this host ready to run builds?
 *
 * Loads the config, runs the host preflight (plus Softnet's requirements when `vmNetwork` asks
 * for isolation), then a full cycle on a throwaway clone
 * (`<prefix>-<workerId>-doctor<random>-0`: clone → run → vm-exists, vm-ip, ssh-alive,
 * disk-space → vm-host-key → delete) and, when `controllerUrl` is set, checks that the controller answers
 * `GET /health` and accepts the key (a side-effect-free read of the worker's own record) — each
 * controller of a `controllerUrl` list, saying which answer. Exit 0 when every check passes,
 * 1 otherwise, 64 for bad arguments. The clone is released in `finally` and on SIGINT/SIGTERM,
 * so no VM is left behind.
 *
 * Host key: with `vmHostKey` set the clone must answer with it (a clone of the base image has
 * the image's key); without it the check passes with a warning naming the key seen. With
 * `--learn-host-key` the key the clone answers with is written into the config file as
 * `vmHostKey` (the file — a symlink's target — is replaced, its mode and owner kept), unless the
 * key is already in `vmHostKey`: then a list of keys (a rotation) stays as it is.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, mkdirSync, readFileSync, realpathSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { parseLiveness, type Liveness } from '../protocol/liveness.ts';
import { pathOf, ROUTES } from '../protocol/routes.ts';
import { agentIntervals, livenessReport } from '../monitor/watchdog-policy.ts';
import type { CheckResult } from '../health/check.ts';
import { timed } from '../health/check.ts';
import { runPreflight } from '../health/preflight.ts';
import { checkSoftnet } from '../health/softnet.ts';
import { readConfFile } from '../sys/conf-file.ts';
import type { HostKeyPolicy } from '../sys/ssh.ts';
import { ExpoError, isExpoError } from '../protocol/errors.ts';
import { NodeExec } from '../sys/exec.ts';
import { Ssh2Client } from '../sys/ssh2-client.ts';
import { EphemeralVm } from '../vm/ephemeral-vm.ts';
import { TartCli } from '../vm/tart-cli.ts';
import { defaultConfigPath, expandHome, loadAgentConfig, type AgentConfig } from '../agent/config.ts';
import { formatJson, formatTable, type HintContext } from './doctor-report.ts';

const VM_CHECKS = ['vm-exists', 'vm-ip', 'ssh-alive', 'disk-space'] as const;
const CONTROLLER_TIMEOUT_MS = 5000;

/** Where the doctor writes: the report to `out`, progress to `err`. */
export interface DoctorIo {
  out: (text: string) => void;
  err: (text: string) => void;
}

const processIo: DoctorIo = {
  out: (t) => process.stdout.write(`${t}\n`),
  err: (t) => process.stderr.write(`${t}\n`),
};

const skipped = (name: string, why: string): CheckResult => ({ name, ok: false, detail: `skipped: ${why}`, durationMs: 0 });

/** What the doctor was asked to do beyond checking. */
interface DoctorMode {
  /** Write the host key the clone answers with into the config file as `vmHostKey`. */
  learnHostKey: boolean;
  configPath: string;
}

/**
 * Sets `vmHostKey` in the config file, keeping every other field and the file's mode and owner.
 * A symlinked config is written through to its target (the link stays a link); a new file is
 * written beside the target and renamed over it, so a reader never sees half a file. When the
 * owner cannot be kept (not root, file of another user) nothing is written.
 */
function writeHostKey(configPath: string, fingerprint: string): void {
  const target = realpathSync(configPath);
  const raw = { ...readConfFile(target), vmHostKey: fingerprint };
  const st = statSync(target);
  const mode = st.mode & 0o777;
  const tmp = `${target}.tmp-${randomBytes(6).toString('hex')}`;
  writeFileSync(tmp, `${JSON.stringify(raw, null, 2)}\n`, { mode, flag: 'wx' });
  try {
    chmodSync(tmp, mode);
    // The new file's own owner, not this process's: on macOS (or in a setgid folder) it takes the
    // folder's group, which may already be the right one.
    const made = statSync(tmp);
    if (made.uid !== st.uid || made.gid !== st.gid) {
      try {
        chownSync(tmp, st.uid, st.gid);
      } catch (cause) {
        throw new Error(`cannot keep the owner (uid ${st.uid}, gid ${st.gid}) of ${target}: ${(cause as NodeJS.ErrnoException).code}; not written — run as that user or as root`, { cause });
      }
    }
    renameSync(tmp, target);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/** The `vm-host-key` check, from what the SSH connection saw. */
function hostKeyCheck(config: AgentConfig, mode: DoctorMode, seen: string | undefined, sshCheck: CheckResult | undefined): CheckResult {
  const pinned = config.vmHostKey;
  if (sshCheck?.code === 'SSH_HOST_KEY_MISMATCH') {
    return { name: 'vm-host-key', ok: false, detail: sshCheck.detail, durationMs: 0, code: 'SSH_HOST_KEY_MISMATCH' };
  }
  if (seen === undefined) return skipped('vm-host-key', `${sshCheck?.name ?? 'vm-start'} failed`);
  if (mode.learnHostKey) {
    // A list (old and new image during a rotation) that holds the key stays as it is.
    if (pinned.includes(seen)) {
      const of = pinned.length === 1 ? '' : `, one of ${pinned.length}: ${pinned.join(', ')}`;
      return { name: 'vm-host-key', ok: true, detail: `${seen} is already pinned (vmHostKey${of}); ${mode.configPath} left unchanged`, durationMs: 0 };
    }
    return timedSync('vm-host-key', () => {
      writeHostKey(mode.configPath, seen);
      const was = pinned.length === 0 ? '' : ` (was ${pinned.join(', ')})`;
      return { ok: true, detail: `pinned ${seen}: wrote "vmHostKey" to ${mode.configPath}${was}` };
    });
  }
  if (pinned.length > 0) return { name: 'vm-host-key', ok: true, detail: `${seen} matches vmHostKey`, durationMs: 0 };
  return {
    name: 'vm-host-key',
    ok: true,
    detail: `warning: not pinned — any machine answering at a clone's address is trusted. The base image answers with ${seen}: pin it with "vmHostKey": "${seen}" in ${mode.configPath}, or run expo-worker doctor --learn-host-key`,
    durationMs: 0,
  };
}

function timedSync(name: string, body: () => { ok: boolean; detail: string }): CheckResult {
  try {
    return { name, ...body(), durationMs: 0 };
  } catch (err) {
    return { name, ok: false, detail: (err as Error).message, durationMs: 0 };
  }
}

async function vmCycle(config: AgentConfig, checks: CheckResult[], io: DoctorIo, signal: AbortSignal, ctx: HintContext, mode: DoctorMode): Promise<void> {
  let key: Buffer;
  try {
    key = readFileSync(config.vmSshKey);
  } catch (err) {
    checks.push({ name: 'ssh-key', ok: false, detail: `cannot read ${config.vmSshKey}: ${(err as NodeJS.ErrnoException).code}`, durationMs: 0 });
    return;
  }
  mkdirSync(config.logDir, { recursive: true });
  const driver = new TartCli({ exec: new NodeExec(), tartPath: config.tartPath, tartHome: config.tartHome, callTimeoutMs: config.tartTimeoutS * 1000 });
  const buildId = `doctor${randomBytes(5).toString('hex')}`;
  const vmChecks: CheckResult[] = [];
  const started = performance.now();
  let startMs: number | undefined;
  let vm: EphemeralVm | undefined;
  let failure: unknown;
  let seenHostKey: string | undefined;
  // Learning, or nothing pinned: accept the key and note it; otherwise only the pinned keys.
  const hostKey: HostKeyPolicy =
    config.vmHostKey.length > 0 && !mode.learnHostKey
      ? { kind: 'pinned', fingerprints: config.vmHostKey }
      : { kind: 'record', onKey: (fp) => (seenHostKey = fp) };
  try {
    vm = await EphemeralVm.acquire(
      {
        driver,
        ssh: new Ssh2Client(),
        baseVm: config.vmName,
        workerId: config.workerId,
        clonePrefix: config.clonePrefix,
        logDir: config.logDir,
        sshUser: config.vmUser,
        sshPrivateKey: key,
        ipWaitS: config.vmIpWaitS,
        sshReadyTimeoutS: config.sshReadyTimeoutS,
        minFreeDiskGb: config.minFreeDiskGb,
        stopTimeoutS: config.vmStopTimeoutS,
        hostKey,
        network: config.vmNetwork,
        onProgress: (line) => io.err(`doctor: ${line}`),
        onCheck: (c) => {
          startMs ??= Math.round(performance.now() - started - c.durationMs);
          vmChecks.push(c);
        },
      },
      { buildId, attempt: 0, signal },
    );
  } catch (err) {
    failure = err;
  }
  ctx.cloneName = `${config.clonePrefix}-${config.workerId}-${buildId}-0`;
  const startFailed = failure !== undefined && vmChecks.length === 0;
  checks.push({
    name: 'vm-start',
    ok: !startFailed,
    detail: startFailed ? (failure as Error).message : `cloned ${config.vmName} → ${ctx.cloneName} and started it`,
    durationMs: startMs ?? Math.round(performance.now() - started),
    ...(startFailed && isExpoError(failure) ? { code: failure.code } : {}),
  });
  checks.push(...vmChecks);
  const failedName = vmChecks.find((c) => !c.ok)?.name ?? 'vm-start';
  for (const name of VM_CHECKS) {
    if (!vmChecks.some((c) => c.name === name)) checks.push(skipped(name, `${failedName} failed`));
  }
  if (vm !== undefined) seenHostKey ??= vm.session.hostKeyFingerprint;
  const sshCheck = vmChecks.find((c) => c.name === 'ssh-alive') ?? vmChecks.find((c) => !c.ok);
  checks.push(hostKeyCheck(config, mode, seenHostKey, sshCheck));
  // acquire released the clone itself when it failed; release again to learn the outcome (idempotent).
  checks.push(
    await timed('vm-delete', async () => {
      // A clean cycle's tart run log is of no use; a failed one's stays (pruned with the agent's).
      if (vm !== undefined) await vm.release({ removeLog: vmChecks.every((c) => c.ok) });
      else await driver.delete(ctx.cloneName as string).catch((e: unknown) => {
        if (!isExpoError(e, 'VM_NOT_FOUND')) throw e;
      });
      const left = (await driver.list()).some((v) => v.name === ctx.cloneName);
      return left ? { ok: false, detail: `${ctx.cloneName} is still there` } : { ok: true, detail: `${ctx.cloneName} deleted` };
    }),
  );
}

type Probe = { ok: boolean; detail: string; code?: string };

/** `GET /health` of one controller; never throws. */
async function probeHealth(base: string): Promise<Probe> {
  try {
    const res = await request(`${base}${pathOf(ROUTES.health, {})}`, { headersTimeout: CONTROLLER_TIMEOUT_MS, bodyTimeout: CONTROLLER_TIMEOUT_MS });
    const body = await res.body.text();
    if (res.statusCode !== 200) return { ok: false, detail: `GET /health answered ${res.statusCode}`, code: 'HTTP_STATUS' };
    const status = (JSON.parse(body) as { status?: unknown }).status;
    return { ok: true, detail: `${base} answers (status ${String(status)})` };
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    return { ok: false, detail: (err as Error).message, ...(typeof code === 'string' ? { code } : {}) };
  }
}

/** A read of the worker's own record with its key (a heartbeat would reconcile, and fail, builds it runs); never throws. */
async function probeAuth(config: AgentConfig, base: string): Promise<Probe & { liveness: Liveness | null }> {
  try {
    const res = await request(`${base}${pathOf(ROUTES.getWorker, { id: config.workerId })}`, {
      headers: { authorization: `Bearer ${config.apiKey}` },
      headersTimeout: CONTROLLER_TIMEOUT_MS,
      bodyTimeout: CONTROLLER_TIMEOUT_MS,
    });
    await res.body.dump();
    const r = (p: Probe, liveness: Liveness | null = null) => ({ ...p, liveness });
    switch (res.statusCode) {
      case 200:
        return r({ ok: true, detail: `key accepted for worker ${config.workerId}` }, parseLiveness(res.headers));
      case 404:
        return r({ ok: false, detail: `the controller knows no worker ${config.workerId}: check workerId (404)`, code: 'API_NOT_FOUND' });
      case 401:
        return r({ ok: false, detail: 'the controller rejected the apiKey (401)', code: 'AUTH_INVALID' });
      case 403:
        return r({ ok: false, detail: `the apiKey belongs to another worker than ${config.workerId} (403)`, code: 'AUTH_FORBIDDEN' });
      default:
        return r({ ok: false, detail: `heartbeat answered ${res.statusCode}`, code: 'HTTP_STATUS' });
    }
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    return { ok: false, detail: (err as Error).message, liveness: null, ...(typeof code === 'string' ? { code } : {}) };
  }
}

/**
 * One controller: its checks say what it answered. Several (a `controllerUrl` list): each is
 * asked, and each check has a line per controller. Reachable when at least one answers (the
 * agent fails over to it; the others are a warning); the key must be accepted by every one that
 * answers — one that refuses it is on another database or has another worker table.
 */
async function controllerChecks(config: AgentConfig, checks: CheckResult[]): Promise<void> {
  const bases = config.controllerUrls.map((u) => u.replace(/\/+$/, ''));
  const several = bases.length > 1;
  const line = (base: string, p: Probe) => `${p.ok ? '✓' : '✗'} ${base}: ${p.detail.startsWith(`${base} `) ? p.detail.slice(base.length + 1) : p.detail}`;
  let answering: string[] = [];
  const reachable = await timed('controller-reachable', async () => {
    const probes = await Promise.all(bases.map(probeHealth));
    answering = bases.filter((_b, i) => probes[i]!.ok);
    if (!several) return probes[0]!;
    const lines = bases.map((b, i) => line(b, probes[i]!));
    const down = bases.length - answering.length;
    if (answering.length === 0) return { ok: false, detail: `no controller answers:\n${lines.join('\n')}`, code: probes[0]!.code };
    const warning = down > 0 ? `\nwarning: ${down} of ${bases.length} controllers do not answer: the agent fails over to the others` : '';
    return { ok: true, detail: `${answering.length} of ${bases.length} controllers answer:\n${lines.join('\n')}${warning}` };
  });
  checks.push(reachable);
  if (!reachable.ok) {
    checks.push(skipped('controller-auth', 'controller-reachable failed'));
    return;
  }
  let liveness: Liveness | null = null;
  checks.push(
    await timed('controller-auth', async () => {
      const probes = await Promise.all(answering.map((b) => probeAuth(config, b)));
      liveness = probes.find((p) => p.ok)?.liveness ?? null;
      if (!several) {
        const { liveness: _l, ...p } = probes[0]!;
        return p;
      }
      const refused = probes.find((p) => !p.ok);
      const detail = answering.map((b, i) => line(b, probes[i]!)).join('\n');
      return refused === undefined ? { ok: true, detail } : { ok: false, detail, code: refused.code };
    }),
  );
  const stated = liveness as Liveness | null;
  if (checks.at(-1)?.ok) checks.push(livenessCheck(config, stated));
}

/** The controller's clocks and the intervals this agent will use against them; fails when they would starve it. */
function livenessCheck(config: AgentConfig, liveness: Liveness | null): CheckResult {
  if (liveness === null) return { name: 'controller-liveness', ok: true, detail: 'the controller states no heartbeat timeout (an older version): the configured intervals are used as they are', durationMs: 0 };
  const { lines, warnings } = livenessReport(config, liveness);
  const detail = [...lines, ...warnings.map((w) => `warning: ${w}`)].join('\n');
  // Capped intervals are fine; a timeout shorter than the monitor can beat is not.
  const starved = agentIntervals(config, liveness).monitorIntervalS * 1000 > liveness.heartbeatTimeoutMs / 4;
  return { name: 'controller-liveness', ok: !starved, detail, durationMs: 0, ...(starved ? { code: 'CFG_INVALID' } : {}) };
}

/** Runs every check; the list is in the order run. */
async function runDoctor(config: AgentConfig, io: DoctorIo, signal: AbortSignal, ctx: HintContext, mode: DoctorMode): Promise<CheckResult[]> {
  const checks: CheckResult[] = [];
  const driver = new TartCli({ exec: new NodeExec(), tartPath: config.tartPath, tartHome: config.tartHome, callTimeoutMs: config.tartTimeoutS * 1000 });
  io.err('doctor: host preflight');
  const preflight = await runPreflight({
    driver,
    baseVm: config.vmName,
    tartHome: config.tartHome ?? join(homedir(), '.tart'),
    minHostFreeDiskGb: config.hostMinFreeDiskGb,
  });
  checks.push(...preflight);
  const blocking = preflight.find((c) => !c.ok && c.name !== 'host-disk');
  if (config.vmNetwork.isolation === 'softnet') {
    // tart runs with the agent's PATH (the LaunchDaemon sets one with Homebrew's bin first).
    const network = await checkSoftnet({ driver, exec: new NodeExec(), searchPath: process.env.PATH ?? '' });
    if (network.ok) {
      network.detail += `; clones may reach ${config.vmNetwork.allow.join(', ') || 'no private address'} beyond the internet`;
      for (const url of config.vmControllerUrls) {
        const host = new URL(url).hostname;
        if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(host)) {
          network.detail += `\nwarning: the controller's host ${host} is a name: unless it resolves to a public address, list its address in vmNetwork.allow`;
        }
      }
    }
    checks.push(network);
  }
  if (blocking === undefined) {
    await vmCycle(config, checks, io, signal, ctx, mode);
  } else {
    for (const name of ['vm-start', ...VM_CHECKS, 'vm-host-key', 'vm-delete']) checks.push(skipped(name, `${blocking.name} failed`));
  }
  if (config.controllerUrl !== '') {
    io.err('doctor: controller');
    await controllerChecks(config, checks);
  }
  return checks;
}

const USAGE = `Usage: expo-worker doctor [--config PATH] [--json] [--learn-host-key]

  --config PATH       agent config (default ~/.expo-worker/config.json)
  --json              the checks as JSON
  --learn-host-key    pin the host key the base image's clone answers with: write it into
                      the config file as "vmHostKey" (unchanged when the key is already in it)`;

/** The `doctor` command. Returns the exit code. */
export async function main(argv: string[], io: DoctorIo = processIo): Promise<number> {
  let args;
  try {
    args = parseArgs({
      args: argv,
      options: { config: { type: 'string' }, json: { type: 'boolean' }, 'learn-host-key': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
    }).values;
  } catch (err) {
    io.err(`${(err as Error).message}\n${USAGE}`);
    return 64;
  }
  if (args.help) {
    io.out(USAGE);
    return 0;
  }
  const configPath = args.config ?? defaultConfigPath();
  const ctx: HintContext = { vmName: '?', vmUser: '?', vmSshKey: '?', logDir: '?', configPath };
  let checks: CheckResult[];
  let config: AgentConfig | undefined;
  try {
    config = loadAgentConfig(configPath, { requireController: false });
  } catch (err) {
    if (!(err instanceof ExpoError)) throw err;
    checks = [{ name: 'config', ok: false, detail: err.message, durationMs: 0 }];
  }
  if (config !== undefined) {
    Object.assign(ctx, { vmName: config.vmName, vmUser: config.vmUser, vmSshKey: config.vmSshKey, logDir: config.logDir });
    const ac = new AbortController();
    const onSignal = (sig: NodeJS.Signals): void => {
      io.err(`doctor: ${sig}, cleaning up`);
      ac.abort(new ExpoError('VM_ABORTED', `interrupted by ${sig}`));
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    try {
      checks = [{ name: 'config', ok: true, detail: `${configPath} (worker ${config.workerId})`, durationMs: 0 }, ...(await runDoctor(config, io, ac.signal, ctx, { learnHostKey: args['learn-host-key'] === true, configPath: resolve(expandHome(configPath)) }))];
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  }
  const all = checks!;
  io.out(args.json ? formatJson(all) : formatTable(all, ctx));
  return all.every((c) => c.ok) ? 0 : 1;
}
