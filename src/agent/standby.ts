/**
 * The standby VM (config `standby: 1`): one VM cloned, booted and health-checked ahead of time
 * while a slot is free, so that a claim starts its first step without waiting for a boot.
 *
 * States of the one standby: `none` → `preparing` (the build path's own `EphemeralVm.acquire`,
 * under the agent's start lock) → `ready` → `taken` (handed to a build, which releases it like
 * any VM) or `discarded` (stopped and deleted: too old, base image changed, dead, or the agent
 * stopping; then its cache shares go too, {@link StandbyParts.removed}) → `none`. A failed
 * preparation goes back to `none`; the next build's end tries again, or a timer after 30 s,
 * doubling up to 10 min, so an idle agent is not left without one (the wait is reset only by a
 * standby a build takes, or one that lived 5 min). A ready standby whose `tart run` exits is
 * discarded and replaced, not left for a claim to find dead: at once if it lived 5 min, else
 * after the retry wait, like a failed preparation.
 *
 * Caches: the standby boots like any VM, with its caches' shares, empty (build-kit.ts); the
 * claim that takes it copies the build's variant into them (build-caches.ts).
 *
 * When: `fill()` runs at start, after every build ends and after a take, and makes a standby
 * only while the agent polls and a slot is free (`freeSlots() ≥ 1`). So with two slots there is
 * at most one standby, beside at most one build: never more than two VMs. A claim always takes
 * or discards the standby before it prepares a VM of its own, so a standby never holds the VM
 * a build (or a build's retry) needs.
 *
 * Before use a ready standby is re-checked: `tart run` still alive, `tart list` shows it
 * running, SSH `echo alive` answers. A dead one is deleted and the claim prepares a fresh VM
 * the normal way (a miss). A claim arriving while the standby boots waits for it: it can only
 * be ready sooner than a fresh clone.
 *
 * Staleness: older than `maxAgeMs`, the base image changed since the standby was cloned, or a
 * reload changed what the VM is made of ({@link standbyVmShape}).
 * The base is fingerprinted by its files in TART_HOME (see {@link baseImageFingerprint}); a
 * timer discards a stale ready standby and makes a new one, and a claim checks again.
 *
 * Names: `<prefix>-<workerId>-standby<id>-0`, a clone name the orphan reaper and run-log pruning
 * know; {@link StandbyPool.owns} keeps the reaper off it from the clone until it is deleted,
 * also while a build runs on it. The reaper asks after listing the VMs, so a standby cloned
 * meanwhile is never taken for an orphan.
 */
import { statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { checkSshAlive, checkVmExists } from '../health/vm-checks.ts';
import type { SshSession } from '../sys/ssh.ts';
import type { VmDriver, VmExit } from '../vm/vm-driver.ts';
import type { BuildVm } from './runner-ports.ts';

/** A VM the pool can keep (EphemeralVm fits). */
export interface StandbyVm extends BuildVm {
  readonly session: SshSession;
  readonly exited: Promise<VmExit>;
}

/** What the pool needs that follows the config file (set again on a reload). */
export interface StandbyParts {
  /** Clones, boots and health-checks a VM named for `buildId` (the build path's own acquire). */
  acquire: (req: { buildId: string; attempt: number; signal: AbortSignal }) => Promise<StandbyVm>;
  driver: Pick<VmDriver, 'list'>;
  /** The base image's fingerprint now; null when it cannot be told (then only the age counts). */
  baseFingerprint: () => string | null;
  /** How long a standby may wait for a build, ms. */
  maxAgeMs: number;
  /**
   * What the config says of the VM itself (image, user, key, network, caches' shares…): a reload
   * that changes it replaces the standby, one that keeps it keeps the standby. Unset: every
   * configure replaces it.
   */
  vmShape?: string;
  /** Called once a standby VM was deleted without running a build (its cache shares go). */
  removed?: (vmName: string) => Promise<void>;
}

export interface StandbyOptions {
  log: Logger;
  metrics?: { standbyUsed(result: 'hit' | 'miss'): void };
  /** How long the SSH re-check may take, ms. Default 5000. */
  checkTimeoutMs?: number;
}

type Entry =
  | { state: 'preparing'; id: string; done: Promise<void>; ac: AbortController }
  | { state: 'ready'; id: string; vm: StandbyVm; readyAt: number; fingerprint: string | null; generation: number; dead: boolean; removed: StandbyParts['removed'] };

/** How often a ready standby's age and base image are checked, at most, ms. */
const STALE_CHECK_MAX_MS = 60_000;
/** After a failed preparation the next try waits this long, doubled each time up to the max, ms: an idle agent is not left without a standby. */
const RETRY_FIRST_MS = 30_000;
const RETRY_MAX_MS = 600_000;
/**
 * A standby that lived this long before its `tart run` exited is replaced at once and resets the
 * retry wait; one that died sooner counts as a failed preparation (an image or host problem that
 * kills every VM soon after boot must not clone and boot in a tight loop), ms.
 */
const STABLE_LIFE_MS = 300_000;

/**
 * A cheap fingerprint of the base image: inode, size and mtime of each of its files in
 * `<tartHome>/vms/<name>/`. Re-cloning the base (`tart clone new base` replaces the directory:
 * new inodes), running it to provision (disk.img and nvram.bin written) or `tart set` change it;
 * clones only read it (they bump the access time, which is left out). Null when the base is not
 * a local VM (an OCI reference: its cache entry is replaced by a new pull under a new digest, and
 * the agent then relies on `standbyMaxAgeS`).
 */
export function baseImageFingerprint(tartHome: string, baseVm: string): string | null {
  const dir = join(tartHome, 'vms', baseVm);
  try {
    return ['config.json', 'disk.img', 'nvram.bin']
      .map((f) => {
        const st = statSync(join(dir, f));
        return `${f}:${st.ino}:${st.size}:${st.mtimeMs}`;
      })
      .join(' ');
  } catch {
    return null;
  }
}

export class StandbyPool {
  private readonly o: StandbyOptions;
  private p: StandbyParts | undefined;
  /** Bumped by each configure: a standby made under an older config is stale. */
  private generation = 0;
  private entry: Entry | null = null;
  /** Ids of every standby VM that exists or may: from the clone until it is deleted (by its build or by the pool). */
  private readonly held = new Set<string>();
  private freeSlots: () => number = () => 0;
  private closed = false;
  private timer: NodeJS.Timeout | undefined;
  private seq = 0;
  /** Deletions under way: a miss waits for them, so the fresh VM never runs beside a standby still stopping. */
  private discarding: Promise<void> = Promise.resolve();
  /** The next try after failed preparations, and how long it waits. */
  private retryTimer: NodeJS.Timeout | undefined;
  private retryMs = RETRY_FIRST_MS;

  constructor(options: StandbyOptions) {
    this.o = options;
  }

  /**
   * Sets (or, on a reload, replaces) the config's parts; a standby made before is replaced.
   * Returns the pool's generation under these parts: a build claimed under them passes it to
   * {@link take}, so a reload between its claim and its `take` cannot hand it a VM of another shape.
   */
  configure(parts: StandbyParts): number {
    // A reload that leaves the VM as it was keeps a good standby (a boot is 15–45 s).
    if (parts.vmShape === undefined || parts.vmShape !== this.p?.vmShape) this.generation++;
    this.p = parts;
    clearInterval(this.timer);
    this.timer = setInterval(() => void this.refreshIfStale(), Math.min(STALE_CHECK_MAX_MS, parts.maxAgeMs));
    this.timer.unref();
    if (this.closed) clearInterval(this.timer);
    else void this.refreshIfStale();
    return this.generation;
  }

  /** Starts keeping a standby; `freeSlots` says how many slots are free right now (0 while draining). */
  start(freeSlots: () => number): void {
    this.freeSlots = freeSlots;
    this.fill();
  }

  /** The standby ids the orphan reaper must leave alone. */
  liveIds(): string[] {
    return [...this.held];
  }

  /** Whether a clone id is one of this pool's standbys (booting, ready, running a build, being deleted). */
  owns(id: string): boolean {
    return this.held.has(id);
  }

  /** VMs the pool holds that no build runs: 0 or 1 (booting, or ready and its `tart run` alive). */
  idleVms(): number {
    return this.entry === null || (this.entry.state === 'ready' && this.entry.dead) ? 0 : 1;
  }

  /** Makes a standby when there is none, the pool is open and a slot is free. */
  fill(): void {
    const p = this.p;
    if (p === undefined || this.closed || this.entry !== null || this.freeSlots() < 1) return;
    // Unique per process and never a `-` (clone names parse on it); the time keeps it unique across restarts.
    const id = `standby${Date.now().toString(36)}${(this.seq++).toString(36)}`;
    const ac = new AbortController();
    const fingerprint = p.baseFingerprint();
    const generation = this.generation;
    this.o.log.info({ standby: id }, 'preparing a standby VM');
    this.held.add(id);
    const removed = p.removed;
    const done = p.acquire({ buildId: id, attempt: 0, signal: ac.signal }).then(
      (vm) => {
        const ready: Extract<Entry, { state: 'ready' }> = { state: 'ready', id, vm, readyAt: Date.now(), fingerprint, generation, dead: false, removed };
        if (this.closed || this.entry?.id !== id) return this.discard(ready, 'the agent is stopping');
        this.entry = ready;
        void vm.exited.then(() => {
          ready.dead = true;
          if (this.entry !== ready) return;
          this.entry = null;
          const livedMs = Date.now() - ready.readyAt;
          // Replaced rather than found dead by the next claim (a miss): at once after a long
          // life, else after the retry wait, as a failed preparation.
          if (livedMs >= STABLE_LIFE_MS) {
            this.retryMs = RETRY_FIRST_MS;
            void this.discard(ready, 'its tart run exited').then(() => this.fill());
          } else {
            void this.discard(ready, 'its tart run exited').then(() => this.retryLater(`its tart run exited ${Math.round(livedMs / 1000)} s after it was ready`));
          }
        });
        this.o.log.info({ standby: id, vm: vm.name, ip: vm.ip }, 'standby VM ready');
        return undefined;
      },
      (err: unknown) => {
        // acquire deleted what it had made.
        this.held.delete(id);
        if (this.entry?.id === id) this.entry = null;
        if (ac.signal.aborted) return;
        this.retryLater((err as Error).message);
      },
    );
    this.entry = { state: 'preparing', id, done, ac };
  }

  /** After a failed preparation (or a standby dead soon after boot): the next try waits, doubling each time. */
  private retryLater(why: string): void {
    if (this.closed) return;
    this.o.log.warn({ err: why, retryInS: this.retryMs / 1000 }, 'standby VM could not be prepared; trying again after the next build or the wait');
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.fill(), this.retryMs);
    this.retryTimer.unref();
    this.retryMs = Math.min(RETRY_MAX_MS, this.retryMs * 2);
  }

  /**
   * The standby for a claim, re-checked, or null (a miss: the caller prepares a VM the normal
   * way). A dead or stale standby is deleted before this returns, so the VM slot it held is free.
   * `generation` is what {@link configure} returned for the config the build was claimed under:
   * after a reload that changed the VM's shape (caches' shares, image, user…) the build's runner
   * still has the old config, so it prepares its own VM and the standby is left for the next claim.
   */
  async take(signal: AbortSignal, note: (line: string) => void, generation?: number): Promise<BuildVm | null> {
    if (generation !== undefined && generation !== this.generation) {
      note('the agent config was reloaded since this build was claimed: the standby VM is left for the next build');
      return this.miss();
    }
    let entry = this.entry;
    if (entry?.state === 'preparing') {
      note('waiting for the standby VM that is booting');
      await Promise.race([entry.done, new Promise((r) => signal.addEventListener('abort', r, { once: true }))]);
      entry = this.entry;
    }
    if (signal.aborted || entry?.state !== 'ready') return this.miss();
    this.entry = null;
    const why = this.staleness(entry) ?? (await this.deadness(entry));
    if (why !== null) {
      note(`standby VM ${entry.vm.name} not used: ${why}; deleting it and preparing a fresh VM`);
      await this.discard(entry, why);
      return this.miss();
    }
    this.o.metrics?.standbyUsed('hit');
    // A standby that served a build proves the image and host: the next failure waits little.
    this.retryMs = RETRY_FIRST_MS;
    note(`using the standby VM ${entry.vm.name}, ready for ${Math.round((Date.now() - entry.readyAt) / 1000)} s`);
    this.o.log.info({ standby: entry.id, vm: entry.vm.name }, 'standby VM taken by a build');
    const { vm, id } = entry;
    // Another slot may be free: get its standby booting while this build runs.
    queueMicrotask(() => this.fill());
    return {
      name: vm.name,
      ip: vm.ip,
      session: vm.session,
      exited: vm.exited,
      release: (options) => vm.release(options).finally(() => this.held.delete(id)),
    };
  }

  /** Stops making standbys and deletes the one there is (drain, stop). */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    clearTimeout(this.retryTimer);
    const entry = this.entry;
    this.entry = null;
    if (entry?.state === 'preparing') {
      // acquire releases its half-made VM when aborted.
      entry.ac.abort();
      await entry.done;
    } else if (entry?.state === 'ready') {
      await this.discard(entry, 'the agent is stopping');
    }
    await this.discarding;
  }

  private async miss(): Promise<null> {
    this.o.metrics?.standbyUsed('miss');
    await this.discarding;
    return null;
  }

  private staleness(entry: Extract<Entry, { state: 'ready' }>): string | null {
    const p = this.p as StandbyParts;
    const ageMs = Date.now() - entry.readyAt;
    if (entry.generation !== this.generation) return 'the config was reloaded';
    if (ageMs > p.maxAgeMs) return `older than standbyMaxAgeS (${Math.round(ageMs / 1000)} s)`;
    if (entry.fingerprint !== p.baseFingerprint()) return 'the base image changed since it was cloned';
    return null;
  }

  /** Why a ready standby cannot run a build, or null: `tart run` gone, not running in `tart list`, SSH silent. */
  private async deadness(entry: Extract<Entry, { state: 'ready' }>): Promise<string | null> {
    if (entry.dead) return 'its tart run exited';
    const listed = await checkVmExists((this.p as StandbyParts).driver, entry.vm.name);
    if (!listed.ok) return `tart list: ${listed.detail}`;
    const alive = await checkSshAlive(entry.vm.session, { timeoutMs: this.o.checkTimeoutMs ?? 5000 });
    return alive.ok ? null : `SSH: ${alive.detail}`;
  }

  private async refreshIfStale(): Promise<void> {
    const entry = this.entry;
    if (this.closed || entry?.state !== 'ready') return;
    const why = this.staleness(entry);
    if (why === null) return;
    this.entry = null;
    await this.discard(entry, why);
    this.fill();
  }

  /** Deletes a standby no build took, then its cache shares. */
  private discard(entry: Extract<Entry, { state: 'ready' }>, why: string): Promise<void> {
    const { id, vm } = entry;
    this.o.log.info({ vm: vm.name, why }, 'deleting the standby VM');
    const done = vm.release({ removeLog: true }).then(
      async () => {
        this.held.delete(id);
        await entry.removed?.(vm.name);
      },
      async (err: unknown) => {
        // Let the reaper have it; its shares go now (a full cache copy would stay until a restart).
        this.held.delete(id);
        this.o.log.error({ vm: vm.name, err: (err as Error).message }, 'could not delete the standby VM; the reaper will retry');
        await entry.removed?.(vm.name).catch(() => undefined);
      },
    );
    this.discarding = Promise.all([this.discarding, done]).then(() => undefined);
    return done;
  }
}

/**
 * The config fields a standby VM is made of (its image, login, network, checks, name and cache
 * shares): a reload that changes one replaces the standby ({@link StandbyParts.vmShape}).
 */
export function standbyVmShape(c: {
  readonly vmName: string;
  readonly vmUser: string;
  readonly vmSshKey: string;
  readonly vmNetwork: unknown;
  readonly vmHostKey: readonly string[];
  readonly clonePrefix: string;
  readonly tartHome: string | undefined;
  readonly tartPath: string | undefined;
  readonly minFreeDiskGb: number;
  readonly caches: readonly { readonly name: string }[];
  readonly cacheDir: string;
}): string {
  return JSON.stringify([c.vmName, c.vmUser, c.vmSshKey, c.vmNetwork, c.vmHostKey, c.clonePrefix, c.tartHome ?? null, c.tartPath ?? null, c.minFreeDiskGb, c.caches.map((x) => x.name), c.caches.length > 0 ? c.cacheDir : null]);
}

/** Where tart keeps its VMs: the config's `tartHome`, else the agent's `TART_HOME` (which tart inherits), else `~/.tart`. */
export function tartHomeOf(config: { readonly tartHome: string | undefined }, env: NodeJS.ProcessEnv = process.env): string {
  return config.tartHome ?? (env.TART_HOME !== undefined && env.TART_HOME !== '' ? env.TART_HOME : `${homedir()}/.tart`);
}
