/**
 * One build's throwaway VM: a clone of the base snapshot, started, health-checked, and deleted
 * when done.
 *
 * States: `new → cloned → running → ready → released`. `acquire` walks the first four:
 * clone → `set --random-mac` (no DHCP collisions with the base) → count running VMs and `tart
 * run` (under a {@link VmStartLock}) → `tart list` shows it running → `tart ip --wait` → SSH ready
 * + `echo alive` → `df -h /`. Any failure, abort or early exit of `tart run` on the way releases
 * the clone before `acquire` rethrows. `release` = close SSH → `tart stop --timeout` (or SIGINT,
 * then SIGKILL to the run process) → wait for the run process → `tart delete`; it is idempotent
 * (every call returns the same promise) and always tries the delete.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { ExpoError, isExpoError } from '../protocol/errors.ts';
import type { HostKeyPolicy, SshClient, SshSession } from '../sys/ssh.ts';
import type { CheckResult, VmCheckName } from '../health/check.ts';
import { checkDiskSpace, checkSshAlive, checkVmExists, checkVmIp } from '../health/vm-checks.ts';
import { waitForSsh } from '../health/ssh-ready.ts';
import { MAX_RUNNING_MACOS_VMS } from '../health/preflight.ts';
import { VmStartLock } from './start-lock.ts';
import { cloneName } from './vm-name.ts';
import type { VmDirShare, VmDriver, VmExit, VmNetwork, VmRunHandle } from './vm-driver.ts';

export interface EphemeralVmConfig {
  driver: VmDriver;
  ssh: SshClient;
  /** The base snapshot to clone (the config's `vmName`). */
  baseVm: string;
  workerId: string;
  /** Clone name prefix. Default `expo`. */
  clonePrefix?: string;
  /** Directory for the `tart run` logs (`<name>.log`). */
  logDir: string;
  sshUser: string;
  /** The private key's contents. Never logged. */
  sshPrivateKey: string | Buffer;
  /** Default 22. */
  sshPort?: number;
  /**
   * Default `{ kind: 'any' }`. Clones share the base image's host key, so pinning it (`pinned`
   * with the base image's fingerprint) makes a clone answering with another key — another
   * machine at a stale address, or a changed image — fail `ssh-alive` with
   * `SSH_HOST_KEY_MISMATCH` before any credential is sent.
   */
  hostKey?: HostKeyPolicy;
  /** The clone's network (`tart run` flags). Default `{ isolation: 'shared' }`. */
  network?: VmNetwork;
  /** Host directories shared into the clone (`tart run --dir`), e.g. the build's caches. Default none. */
  dirs?: readonly VmDirShare[];
  /** Seconds `tart ip --wait` may take. Default 120. */
  ipWaitS?: number;
  /** Seconds SSH may take to become ready after the IP. Default 120. */
  sshReadyTimeoutS?: number;
  /** Per-attempt SSH handshake timeout, in ms. Default 10000. */
  sshConnectTimeoutMs?: number;
  /** SSH keepalive interval in ms (0 = off). Default 5000. */
  keepaliveIntervalMs?: number;
  /** Unanswered keepalives before the connection counts as dead. Default 3. */
  keepaliveCountMax?: number;
  /** Timeout of each check command over SSH, in ms. Default 10000. */
  checkTimeoutMs?: number;
  /** Least free disk in the VM, GiB. Default 20. */
  minFreeDiskGb?: number;
  /** `tart stop --timeout`, in seconds. Default 10. */
  stopTimeoutS?: number;
  /** How long to wait for `tart run` to exit after stop before SIGKILL, in ms. Default 15000. */
  exitWaitMs?: number;
  /** How long `tart list` may take to show a started VM as running, in ms. Default 10000. */
  startConfirmMs?: number;
  /** Default 2 (Apple's limit). */
  maxRunningVms?: number;
  /** Shared by every slot of one agent. Default: a lock of this VM's own. */
  startLock?: VmStartLock;
  /** Progress lines for long waits. */
  onProgress?: (line: string) => void;
  /** Called with each check's result as soon as it is known. */
  onCheck?: (result: CheckResult<VmCheckName>) => void;
  /** Called when a phase of `acquire` completes, with how long it took in ms (for metrics). */
  onPhase?: (phase: VmPreparePhase, durationMs: number) => void;
}

/**
 * The timed phases of `acquire`: `clone` (clone + random MAC), `boot_to_ip` (`tart run` until
 * `tart ip` answers, the start lock's wait excluded), `ssh_ready` (until SSH logs in), `checks`
 * (`echo alive` and `df -h /`).
 */
export type VmPreparePhase = 'clone' | 'boot_to_ip' | 'ssh_ready' | 'checks';

export interface AcquireRequest {
  /** The build id, or any id without `-`. */
  buildId: string;
  attempt: number;
  signal?: AbortSignal;
  /**
   * Called once SSH has logged in, before the `ssh-alive` and `disk-space` checks run over the
   * same session: work that needs only a connected VM (uploading the workspace, starting the
   * monitor) overlaps the checks. The checks still decide `acquire`; what the callback started
   * is the caller's to await, and to discard when `acquire` throws.
   */
  onSshReady?: (vm: EphemeralVm) => void;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Resolves true once `p` settles, false after `ms`. */
const within = (p: Promise<unknown>, ms: number): Promise<boolean> =>
  new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    void p.then(
      () => (clearTimeout(t), resolve(true)),
      () => (clearTimeout(t), resolve(true)),
    );
  });

export class EphemeralVm {
  readonly name: string;
  /** The checks run by acquire, in order. */
  readonly checks: CheckResult<VmCheckName>[] = [];
  private readonly config: EphemeralVmConfig;
  private cloned = false;
  private runHandle: VmRunHandle | undefined;
  /** The start in flight (settled either way), which release waits for. */
  private starting: Promise<void> | undefined;
  private sessionRef: SshSession | undefined;
  private address = '';
  private releasing: Promise<void> | undefined;
  /** The vm-exists result from confirming the start, so it is not asked of tart twice. */
  private startedCheck: CheckResult<'vm-exists'> | undefined;
  private bootStartedAt = 0;
  /** The `vm-ip` check, asked as soon as `tart run` is spawned. */
  private ipAsked: Promise<CheckResult<'vm-ip'>> | undefined;

  private constructor(config: EphemeralVmConfig, name: string) {
    this.config = config;
    this.name = name;
  }

  /** The clone name `acquire` gives a request's VM (what its cache shares are named after: one derivation). */
  static nameFor(config: Pick<EphemeralVmConfig, 'clonePrefix' | 'workerId'>, request: Pick<AcquireRequest, 'buildId' | 'attempt'>): string {
    return cloneName({ prefix: config.clonePrefix ?? 'expo', workerId: config.workerId, buildId: request.buildId, attempt: request.attempt });
  }

  /** Clones, starts and checks a VM; on any failure releases it and throws (`VM_UNHEALTHY` with `details.checks` for a failed check). */
  static async acquire(config: EphemeralVmConfig, request: AcquireRequest): Promise<EphemeralVm> {
    const name = EphemeralVm.nameFor(config, request);
    const vm = new EphemeralVm(config, name);
    try {
      await vm.prepare(request.signal, request.onSshReady);
      return vm;
    } catch (err) {
      try {
        await vm.release();
      } catch (releaseErr) {
        config.onProgress?.(`release of ${name} failed: ${(releaseErr as Error).message}`);
      }
      throw err;
    }
  }

  /** The VM's IPv4 address (the one SSH connected to). */
  get ip(): string {
    return this.address;
  }

  /** The open SSH session (closed by release). Its `closed` promise reports keepalive failures. */
  get session(): SshSession {
    if (this.sessionRef === undefined) throw new Error('EphemeralVm.session before acquire finished');
    return this.sessionRef;
  }

  /** Resolves when `tart run` exits — the VM is gone. */
  get exited(): Promise<VmExit> {
    if (this.runHandle === undefined) throw new Error('EphemeralVm.exited before acquire finished');
    return this.runHandle.exited;
  }

  /** The `tart run` log of this clone (`<logDir>/<name>.log`). */
  get logPath(): string {
    return join(this.config.logDir, `${this.name}.log`);
  }

  /**
   * Stops and deletes the clone. Idempotent; rejects only if the delete itself failed. With
   * `removeLog` (a build that went well) the `tart run` log goes too once the clone is deleted;
   * otherwise it stays for diagnosis until the log retention removes it (see run-logs.ts).
   */
  release(options: { removeLog?: boolean } = {}): Promise<void> {
    this.releasing ??= this.doRelease();
    if (options.removeLog !== true) return this.releasing;
    return this.releasing.then(() => {
      try {
        rmSync(this.logPath, { force: true });
      } catch (err) {
        // The clone is gone, which is what release promises; the log's retention will retry.
        this.progress(`could not remove ${this.logPath}: ${(err as Error).message}`);
      }
    });
  }

  private progress(line: string): void {
    this.config.onProgress?.(line);
  }

  private phaseDone(phase: VmPreparePhase, startedAt: number): void {
    this.config.onPhase?.(phase, performance.now() - startedAt);
  }

  private record(result: CheckResult<VmCheckName>): CheckResult<VmCheckName> {
    this.checks.push(result);
    this.config.onCheck?.(result);
    return result;
  }

  private unhealthy(result: CheckResult<VmCheckName>): ExpoError {
    return new ExpoError('VM_UNHEALTHY', `${this.name}: ${result.name} failed: ${result.detail}`, {
      details: { name: this.name, check: result.name, checkCode: result.code, checks: [...this.checks] },
    });
  }

  private async prepare(outer: AbortSignal | undefined, onSshReady: ((vm: EphemeralVm) => void) | undefined): Promise<void> {
    const c = this.config;
    const { driver } = c;
    // One signal for every step: the caller aborting, or `tart run` exiting under us.
    const ac = new AbortController();
    const onOuterAbort = (): void =>
      ac.abort(new ExpoError('VM_ABORTED', `preparing ${this.name} was aborted`, { cause: outer?.reason, details: { name: this.name } }));
    if (outer?.aborted) onOuterAbort();
    outer?.addEventListener('abort', onOuterAbort, { once: true });
    const signal = ac.signal;
    let prepared = false;
    const guard = <T>(p: Promise<T>): Promise<T> =>
      new Promise<T>((resolve, reject) => {
        if (signal.aborted) return reject(signal.reason);
        const onAbort = (): void => reject(signal.reason);
        signal.addEventListener('abort', onAbort, { once: true });
        p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
      });
    try {
      this.progress(`cloning ${c.baseVm} → ${this.name}`);
      this.cloned = true; // a failed clone may leave a partial VM behind: delete in any case
      const cloneStarted = performance.now();
      await guard(driver.clone(c.baseVm, this.name, { signal }));
      await guard(driver.setRandomMac(this.name));
      this.phaseDone('clone', cloneStarted);
      const starting = (c.startLock ?? new VmStartLock()).run(() => this.start(signal));
      // An abort stops the wait, not the start: release waits for it, so a `tart run` spawned
      // just after the abort is stopped too instead of outliving its released VM.
      this.starting = starting.then(
        () => undefined,
        () => undefined,
      );
      await guard(starting);
      const run = this.runHandle as VmRunHandle;
      void run.exited.then((exit) => {
        if (!ac.signal.aborted) {
          ac.abort(exit.error ?? new ExpoError('VM_EXITED', `tart run ${this.name} exited while the VM was being prepared`, { details: { name: this.name, logTail: exit.logTail } }));
        }
      });

      // `tart ip --wait` was asked as soon as `tart run` was spawned (it polls whether or not the
      // VM runs yet), beside the start's confirmation: the wait for the lease overlaps it. The
      // results are still recorded in order, vm-exists first.
      this.progress(`waiting up to ${c.ipWaitS ?? 120} s for ${this.name}'s IP`);
      const ipAsked = this.ipAsked ?? checkVmIp(driver, this.name, { waitS: c.ipWaitS ?? 120, signal });
      const exists = this.record(this.startedCheck ?? (await guard(checkVmExists(driver, this.name))));
      if (!exists.ok) throw this.unhealthy(exists);

      const ip = this.record(await guard(ipAsked));
      if (!ip.ok) {
        if (signal.aborted) throw signal.reason;
        throw this.unhealthy(ip);
      }
      this.address = ip.detail;
      this.phaseDone('boot_to_ip', this.bootStartedAt);

      this.progress(`waiting up to ${c.sshReadyTimeoutS ?? 120} s for SSH on ${this.address}`);
      let firstResolve = true;
      const started = performance.now();
      let ready;
      try {
        ready = await guard(
          waitForSsh({
            ssh: c.ssh,
            // Re-ask tart on retries: a stale lease's address is polled, not trusted.
            resolveHost: async () => {
              if (firstResolve) return ((firstResolve = false), this.address);
              return driver.ip(this.name, { waitS: 0, signal }).catch(() => this.address);
            },
            connect: {
              username: c.sshUser,
              privateKey: c.sshPrivateKey,
              port: c.sshPort,
              readyTimeoutMs: c.sshConnectTimeoutMs ?? 10_000,
              keepaliveIntervalMs: c.keepaliveIntervalMs ?? 5000,
              keepaliveCountMax: c.keepaliveCountMax ?? 3,
              hostKey: c.hostKey ?? { kind: 'any' },
            },
            timeoutS: c.sshReadyTimeoutS ?? 120,
            signal,
            onAttemptFailed: (e, n) => {
              if (n % 5 === 0) this.progress(`SSH attempt ${n}: ${e.message}`);
            },
          }),
        );
      } catch (err) {
        if (signal.aborted) throw signal.reason;
        const code = isExpoError(err) ? err.code : undefined;
        const failed = this.record({
          name: 'ssh-alive',
          ok: false,
          detail: (err as Error).message,
          durationMs: Math.round(performance.now() - started),
          ...(code === undefined ? {} : { code }),
        });
        throw Object.assign(this.unhealthy(failed), { cause: err });
      }
      this.sessionRef = ready.session;
      this.address = ready.host;
      this.phaseDone('ssh_ready', started);
      onSshReady?.(this);
      const checksStarted = performance.now();
      const timeoutMs = c.checkTimeoutMs ?? 10_000;
      const alive = this.record(await guard(checkSshAlive(ready.session, { timeoutMs })));
      if (!alive.ok) throw this.unhealthy(alive);
      const disk = this.record(await guard(checkDiskSpace(ready.session, { minFreeDiskGb: c.minFreeDiskGb ?? 20, timeoutMs })));
      if (!disk.ok) throw this.unhealthy(disk);
      this.phaseDone('checks', checksStarted);
      this.progress(`${this.name} ready at ${this.address}`);
      prepared = true;
    } finally {
      outer?.removeEventListener('abort', onOuterAbort);
      // A failed prepare stops what it still has in flight (the early `tart ip --wait`).
      if (!prepared && !signal.aborted) ac.abort(new ExpoError('VM_ABORTED', `preparing ${this.name} failed`, { details: { name: this.name } }));
    }
  }

  /** Counts running VMs, starts ours, and waits until tart list shows it running. */
  private async start(signal: AbortSignal): Promise<void> {
    const { driver } = this.config;
    const max = this.config.maxRunningVms ?? MAX_RUNNING_MACOS_VMS;
    const running = (await driver.list()).filter((v) => v.source === 'local' && v.state === 'running' && v.name !== this.name);
    if (running.length >= max) {
      throw new ExpoError('VM_LIMIT', `${running.length} VMs already run on this host (${running.map((v) => v.name).join(', ')}); at most ${max} macOS VMs may run`, {
        details: { running: running.map((v) => v.name), max },
      });
    }
    this.progress(`starting ${this.name}`);
    this.bootStartedAt = performance.now();
    const run = await driver.run(this.name, { logPath: this.logPath, network: this.config.network, dirs: this.config.dirs });
    this.runHandle = run;
    this.ipAsked = checkVmIp(driver, this.name, { waitS: this.config.ipWaitS ?? 120, signal });
    // Awaited by prepare unless the start or vm-exists fails first.
    this.ipAsked.catch(() => undefined);
    // Hold the start lock until tart has taken the VM's lock (list says running), so the next
    // slot's count includes this VM. The list that shows it running is also the vm-exists check.
    const deadline = performance.now() + (this.config.startConfirmMs ?? 10_000);
    while (!signal.aborted && run.isRunning() && performance.now() < deadline) {
      const exists = await checkVmExists(driver, this.name);
      if (exists.ok) {
        this.startedCheck = exists;
        return;
      }
      await sleep(100);
    }
    if (!run.isRunning()) {
      const exit = await run.exited;
      throw exit.error ?? new ExpoError('VM_EXITED', `tart run ${this.name} exited at once: ${exit.logTail.trim()}`, { details: { name: this.name } });
    }
  }

  private async doRelease(): Promise<void> {
    const c = this.config;
    const { driver } = c;
    if (this.sessionRef !== undefined) await within(this.sessionRef.close(), 3000);
    if (this.starting !== undefined) await within(this.starting, 15_000);
    const run = this.runHandle;
    if (run?.isRunning()) {
      this.progress(`stopping ${this.name}`);
      try {
        await driver.stop(this.name, { timeoutS: c.stopTimeoutS ?? 10 });
      } catch (err) {
        // Not running yet (tart run had not taken its lock) or tart stop failed: stop it ourselves.
        this.progress(`tart stop ${this.name}: ${(err as Error).message}; sending SIGINT`);
        run.kill('SIGINT');
      }
      if (!(await within(run.exited, c.exitWaitMs ?? 15_000))) {
        run.kill('SIGKILL');
        await within(run.exited, 5000);
      }
    }
    if (!this.cloned) return;
    this.progress(`deleting ${this.name}`);
    for (let attempt = 1; ; attempt++) {
      try {
        await driver.delete(this.name);
        return;
      } catch (err) {
        if (isExpoError(err, 'VM_NOT_FOUND')) return;
        if (attempt >= 3 || !isExpoError(err, 'VM_IS_RUNNING')) throw err;
        // Someone (a racing run) holds it: stop and try again.
        await driver.stop(this.name, { timeoutS: c.stopTimeoutS ?? 10 }).catch(() => undefined);
        await sleep(200);
      }
    }
  }
}
