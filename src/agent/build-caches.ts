/**
 * One build's host caches, from the VM's boot to its deletion (see caches.ts for the disk side):
 *
 *   shares  before any VM of the agent boots — a build's or a standby booted before any claim:
 *           an empty directory per cache, `<cacheDir>/.vm/<vm>/<name>`, shared into it as
 *           `tart run --dir=<name>:<dir>`; fixed for the VM's life
 *   open    once the build has its VM: from here `end` cleans the VM's shares up
 *   checkout the build's variant of each cache (hit or miss) is copied INTO the VM's share (a
 *           copy, not a link: virtio-fs does not follow a host symlink for the guest); part of
 *           preparing: the runner waits for it before the `running` phase, so the prepare
 *           timeout bounds it, and an abort (or `end`) kills the copy
 *   link    before the steps, over SSH: `<guestPath>` becomes a symlink to
 *           `<vmSharedFilesRoot>/<name>` (what was there is removed); only a cache linked here
 *           can be promoted
 *   settle  after the steps succeeded, before the VM stops (`tart stop` is a hard power-off):
 *           `sync` in the guest, so what the build wrote is on the host, not in the guest's cache
 *   end     after the VM is deleted: a succeeded build's linked copies are promoted, if settle
 *           succeeded and the VM was deleted cleanly; any other's discarded; the VM's shares go
 *
 * A VM that never runs a build (a standby deleted unused, a VM that failed its checks) has its
 * shares removed by {@link RunnerCaches.removeVm}.
 *
 * A cache is an optimization: a cache that cannot be copied or linked is noted in the build's
 * log and left out; the build goes on without it.
 */
import { Counter, Gauge, type Registry } from '../sys/prom-lite.ts';
import { isBuildId } from '../protocol/domain.ts';
import type { SshSession } from '../sys/ssh.ts';
import { shellQuote } from '../sys/ssh.ts';
import type { VmDirShare } from '../vm/vm-driver.ts';
import type { CacheSpec } from './cache-config.ts';
import type { CacheCheckout, CacheStore } from './caches.ts';

/** The runner's (and the VM preparation's) view of the host caches. */
export interface RunnerCaches {
  /** Makes a VM's empty shares, before it boots: the `tart run --dir` list. */
  shares(vmName: string): Promise<readonly VmDirShare[]>;
  /** Removes a VM's shares: the VM was deleted without a build's session (which does it in `end`). */
  removeVm(vmName: string): Promise<void>;
  /** The caches of one attempt on its VM; notes (build log lines) say what was found. */
  open(build: { id: string; attempt: number; env: Readonly<Record<string, string>> }, vmName: string, note: (line: string) => void): RunnerCacheSession;
}

/** The caches of one attempt. */
export interface RunnerCacheSession {
  /**
   * Copies each cache's variant into the VM's share; never throws (a cache that fails is left
   * out). An abort of `signal` kills the copy; so does `end`. The same promise on a second call.
   */
  checkout(signal: AbortSignal): Promise<void>;
  /** Links each share to its guest path in the VM; waits for `checkout` first: a guest never sees a half-made copy. */
  link(session: Pick<SshSession, 'exec'>, signal: AbortSignal): Promise<void>;
  /** Flushes the guest's writes into the shares (`sync`); call after the steps succeeded, before the VM stops. */
  settle?(session: Pick<SshSession, 'exec'>, signal: AbortSignal): Promise<void>;
  /** Promotes (succeeded, settled and the VM deleted cleanly) or discards the copies, then removes the VM's shares; call once the VM is gone. */
  end(succeeded: boolean): Promise<void>;
}

/**
 * A lookup's result: `hit`/`miss` (copied), `error` (not copied: left out); `unlinked` comes on
 * top of a `hit` or `miss` whose copy the guest never got linked (so the hit rate is
 * `hit / (hit + miss)`, and the build ran without the cache `unlinked` times).
 */
export type CacheLookupResult = 'hit' | 'miss' | 'error' | 'unlinked';

/** The caches' metrics: lookups by result, bytes on the host. */
export interface CacheMetrics {
  cacheLookup(cache: string, result: CacheLookupResult): void;
  cacheBytes(cache: string, bytes: number): void;
}

/** `expo_worker_agent_cache_total{cache,result}` and `expo_worker_agent_cache_bytes{cache}` on the agent's registry. */
export class PromCacheMetrics implements CacheMetrics {
  private readonly lookups: Counter<'cache' | 'result'>;
  private readonly bytes: Gauge<'cache'>;

  constructor(registry: Registry) {
    // A config reload builds a new one on the same registry: reuse what is registered.
    this.lookups =
      (registry.getSingleMetric('expo_worker_agent_cache_total') as Counter<'cache' | 'result'> | undefined) ??
      new Counter({ name: 'expo_worker_agent_cache_total', help: 'Host cache lookups at build start by cache and result: hit, miss, error (not copied), unlinked (copied, counted as hit or miss, but not linked in the VM). Hit rate: hit / (hit + miss).', labelNames: ['cache', 'result'], registers: [registry] });
    this.bytes =
      (registry.getSingleMetric('expo_worker_agent_cache_bytes') as Gauge<'cache'> | undefined) ??
      new Gauge({ name: 'expo_worker_agent_cache_bytes', help: 'Bytes of every variant of a host cache on the host (after its last promotion).', labelNames: ['cache'], registers: [registry] });
  }

  cacheLookup(cache: string, result: CacheLookupResult): void {
    this.lookups.inc({ cache, result });
  }

  cacheBytes(cache: string, bytes: number): void {
    this.bytes.set({ cache }, bytes);
  }
}

/** A guest path as a shell word: `~/x` under `$HOME`, anything else quoted. */
export function guestWord(path: string): string {
  return path.startsWith('~/') ? `"$HOME"/${shellQuote([path.slice(2)])}` : shellQuote([path]);
}

/** How long the link script waits for the guest to mount a share, s: macOS mounts them during boot and login, which may lag behind sshd. */
export const SHARE_WAIT_S = 30;

/**
 * The shell script that links each cache's guest path to its share, once the share is mounted;
 * it prints `linked <name>` after each (it stops at the first failure: the rest stay unlinked).
 */
export function linkScript(root: string, specs: readonly CacheSpec[]): string {
  const lines = ['set -e'];
  for (const s of specs) {
    const src = guestWord(`${root}/${s.name}`);
    const dst = guestWord(s.guestPath.replace(/\/+$/, ''));
    lines.push(
      `i=0; while [ ! -d ${src} ] && [ $i -lt ${SHARE_WAIT_S * 2} ]; do sleep 0.5; i=$((i+1)); done`,
      `test -d ${src} || { echo share ${s.name} not mounted at ${src} >&2; exit 1; }`,
      `mkdir -p "$(dirname ${dst})"`,
      `rm -rf ${dst}`,
      `ln -s ${src} ${dst}`,
      `echo linked ${s.name}`,
    );
  }
  return lines.join('\n');
}

export interface BuildCachesOptions {
  store: CacheStore;
  caches: readonly CacheSpec[];
  /** Where the guest sees the shares (config `vmSharedFilesRoot`). */
  sharedFilesRoot: string;
  metrics?: CacheMetrics;
  /** Agent log lines for what a build's note does not cover (a promotion that failed). */
  warn: (msg: string, err: Error) => void;
}

/** The runner's caches port over a {@link CacheStore}. */
export class BuildCaches implements RunnerCaches {
  private readonly o: BuildCachesOptions;

  constructor(o: BuildCachesOptions) {
    this.o = o;
  }

  shares(vmName: string): Promise<readonly VmDirShare[]> {
    return this.o.store.vmShares(vmName, this.o.caches);
  }

  async removeVm(vmName: string): Promise<void> {
    try {
      await this.o.store.removeVm(vmName);
    } catch (err) {
      this.o.warn(`could not remove the cache shares of ${vmName}; the next start removes them`, err as Error);
    }
  }

  open(build: { id: string; attempt: number; env: Readonly<Record<string, string>> }, vmName: string, note: (line: string) => void): RunnerCacheSession {
    const { store, metrics, sharedFilesRoot, warn } = this.o;
    const checkouts: CacheCheckout[] = [];
    // Only a copy the guest had linked holds the build's files: an unlinked one (empty on a
    // miss) must never become the variant's base.
    const linked = new Set<string>();
    let checkingOut: Promise<void> | undefined;
    let ended = false;
    // `end` stops a copy still running: its copy would be discarded anyway.
    const stop = new AbortController();
    // Promotion needs the guest's writes flushed: a VM stopped without a `sync` may leave a
    // half-written copy.
    let settled = false;
    const checkout = async (signal: AbortSignal): Promise<void> => {
      // The id becomes a host path: nothing else may have checked it yet.
      if (!isBuildId(build.id)) return note(`caches left out: the build id ${JSON.stringify(build.id)} is not a valid id`);
      for (const spec of this.o.caches) {
        if (signal.aborted) return;
        try {
          const c = await store.checkout(spec, build.env, `${build.id}-${build.attempt}`, store.vmShare(vmName, spec.name), signal);
          checkouts.push(c);
          metrics?.cacheLookup(spec.name, c.hit ? 'hit' : 'miss');
          note(`cache ${spec.name}${c.key === 'default' ? '' : ` (${c.variant})`}: ${c.hit ? 'hit' : 'miss (starts empty)'}`);
        } catch (err) {
          if (signal.aborted) return;
          metrics?.cacheLookup(spec.name, 'error');
          note(`cache ${spec.name} left out: ${(err as Error).message}`);
        }
      }
    };
    return {
      checkout: (signal) => (checkingOut ??= checkout(AbortSignal.any([signal, stop.signal]))),
      link: async (session, signal) => {
        await checkingOut;
        if (checkouts.length === 0) return;
        let why: string | undefined;
        let stdout = '';
        try {
          const r = await session.exec(linkScript(sharedFilesRoot, checkouts.map((c) => c.spec)), { timeoutMs: (SHARE_WAIT_S + 60) * 1000, signal });
          stdout = r.stdout;
          if (r.exitCode !== 0) why = ` (exit ${r.exitCode ?? r.signal}): ${r.stderr.trim().split('\n').pop() ?? ''}`;
        } catch (err) {
          // An abort or a lost session is the runner's to handle; the steps will see it.
          if (signal.aborted) return;
          why = `: ${(err as Error).message}`;
        }
        for (const line of stdout.split('\n')) {
          const m = /^linked (\S+)$/.exec(line.trim());
          if (m) linked.add(m[1]!);
        }
        const unlinked = checkouts.filter((c) => !linked.has(c.spec.name));
        if (unlinked.length === 0) return;
        note(`cache${unlinked.length > 1 ? 's' : ''} ${unlinked.map((c) => c.spec.name).join(', ')} could not be linked in the VM${why ?? ''}`);
        // Counted beside the lookup's hit or miss: the build runs without these caches.
        for (const c of unlinked) metrics?.cacheLookup(c.spec.name, 'unlinked');
      },
      settle: async (session, signal) => {
        if (linked.size === 0) return;
        try {
          const r = await session.exec('sync', { timeoutMs: 120_000, signal });
          if (r.exitCode === 0) settled = true;
          else note(`caches will not be kept: sync in the VM failed (exit ${r.exitCode ?? r.signal})`);
        } catch (err) {
          if (!signal.aborted) note(`caches will not be kept: sync in the VM failed: ${(err as Error).message}`);
        }
      },
      end: async (built) => {
        if (ended) return;
        ended = true;
        // A checkout still copying is stopped, then discarded like the rest.
        stop.abort(new Error('the build ended'));
        await checkingOut;
        const succeeded = built && settled;
        for (const c of checkouts) {
          const keep = succeeded && linked.has(c.spec.name);
          try {
            if (!keep) {
              await store.discard(c);
              continue;
            }
            const { bytes } = await store.promote(c);
            metrics?.cacheBytes(c.spec.name, bytes);
          } catch (err) {
            warn(`cache ${c.spec.name}: ${keep ? 'promotion' : 'discard'} failed`, err as Error);
            await store.discard(c).catch(() => undefined);
          }
        }
        await this.removeVm(vmName);
      },
    };
  }
}
