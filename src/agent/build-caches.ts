/**
 * One build's host caches, from the claim to the VM's deletion (see caches.ts for the disk side):
 *
 *   begin   before the VM starts: a writable copy of each cache's variant (hit or miss), shared
 *           into the VM as `tart run --dir=<name>:<copy>`
 *   link    before the steps, over SSH: `<guestPath>` becomes a symlink to
 *           `<vmSharedFilesRoot>/<name>` (what was there is removed)
 *   settle  after the steps succeeded, before the VM stops (`tart stop` is a hard power-off):
 *           `sync` in the guest, so what the build wrote is on the host, not in the guest's cache
 *   end     after the VM is deleted: a succeeded build's copies are promoted, if settle
 *           succeeded and the VM was deleted cleanly; any other's discarded
 *
 * A cache is an optimization: a cache that cannot be copied or linked is noted in the build's
 * log and left out; the build goes on without it.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import { isBuildId } from '../protocol/domain.ts';
import type { SshSession } from '../sys/ssh.ts';
import { shellQuote } from '../sys/ssh.ts';
import type { VmDirShare } from '../vm/vm-driver.ts';
import type { CacheSpec } from './cache-config.ts';
import type { CacheCheckout, CacheStore } from './caches.ts';

/** The runner's view of a build's caches. */
export interface RunnerCaches {
  /** Checks out the build's caches; notes (build log lines) say what was found. */
  begin(build: { id: string; attempt: number; env: Readonly<Record<string, string>> }, note: (line: string) => void): Promise<RunnerCacheSession>;
}

/** The caches of one attempt. */
export interface RunnerCacheSession {
  /** The shares for `tart run --dir`. */
  readonly dirs: readonly VmDirShare[];
  /** Links each share to its guest path in the VM. */
  link(session: Pick<SshSession, 'exec'>, signal: AbortSignal): Promise<void>;
  /** Flushes the guest's writes into the shares (`sync`); call after the steps succeeded, before the VM stops. */
  settle?(session: Pick<SshSession, 'exec'>, signal: AbortSignal): Promise<void>;
  /** Promotes (succeeded, settled and the VM deleted cleanly) or discards the copies; call once the VM is gone. */
  end(succeeded: boolean): Promise<void>;
}

/** The caches' metrics: lookups by result, bytes on the host. */
export interface CacheMetrics {
  cacheLookup(cache: string, result: 'hit' | 'miss' | 'error'): void;
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
      new Counter({ name: 'expo_worker_agent_cache_total', help: 'Host cache lookups at build start by cache and result: hit, miss, error.', labelNames: ['cache', 'result'], registers: [registry] });
    this.bytes =
      (registry.getSingleMetric('expo_worker_agent_cache_bytes') as Gauge<'cache'> | undefined) ??
      new Gauge({ name: 'expo_worker_agent_cache_bytes', help: 'Bytes of every variant of a host cache on the host (after its last promotion).', labelNames: ['cache'], registers: [registry] });
  }

  cacheLookup(cache: string, result: 'hit' | 'miss' | 'error'): void {
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

/** The shell script that links each cache's guest path to its share. */
export function linkScript(root: string, specs: readonly CacheSpec[]): string {
  const lines = ['set -e'];
  for (const s of specs) {
    const src = guestWord(`${root}/${s.name}`);
    const dst = guestWord(s.guestPath.replace(/\/+$/, ''));
    lines.push(`test -d ${src}`, `mkdir -p "$(dirname ${dst})"`, `rm -rf ${dst}`, `ln -s ${src} ${dst}`);
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

  async begin(build: { id: string; attempt: number; env: Readonly<Record<string, string>> }, note: (line: string) => void): Promise<RunnerCacheSession> {
    const { store, metrics } = this.o;
    const checkouts: CacheCheckout[] = [];
    // The id becomes a host path (and a `--dir` value): nothing else has checked it yet.
    if (!isBuildId(build.id)) {
      note(`caches left out: the build id ${JSON.stringify(build.id)} is not a valid id`);
      return this.session(checkouts, note);
    }
    for (const spec of this.o.caches) {
      try {
        const c = await store.checkout(spec, build.env, `${build.id}-${build.attempt}`);
        checkouts.push(c);
        metrics?.cacheLookup(spec.name, c.hit ? 'hit' : 'miss');
        note(`cache ${spec.name}${c.key === 'default' ? '' : ` (${c.variant})`}: ${c.hit ? 'hit' : 'miss (starts empty)'}`);
      } catch (err) {
        metrics?.cacheLookup(spec.name, 'error');
        note(`cache ${spec.name} left out: ${(err as Error).message}`);
      }
    }
    return this.session(checkouts, note);
  }

  private session(checkouts: CacheCheckout[], note: (line: string) => void): RunnerCacheSession {
    const { store, metrics, sharedFilesRoot, warn } = this.o;
    let ended = false;
    // Promotion needs the guest's writes flushed: a VM stopped without a `sync` may leave a
    // half-written copy.
    let settled = false;
    return {
      dirs: checkouts.map((c) => ({ name: c.spec.name, path: c.path })),
      link: async (session, signal) => {
        if (checkouts.length === 0) return;
        try {
          const r = await session.exec(linkScript(sharedFilesRoot, checkouts.map((c) => c.spec)), { timeoutMs: 60_000, signal });
          if (r.exitCode !== 0) note(`caches could not be linked in the VM (exit ${r.exitCode ?? r.signal}): ${r.stderr.trim().split('\n').pop() ?? ''}`);
        } catch (err) {
          // An abort or a lost session is the runner's to handle; the steps will see it.
          if (!signal.aborted) note(`caches could not be linked in the VM: ${(err as Error).message}`);
        }
      },
      settle: async (session, signal) => {
        if (checkouts.length === 0) return;
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
        const succeeded = built && settled;
        for (const c of checkouts) {
          try {
            if (!succeeded) {
              await store.discard(c);
              continue;
            }
            const { bytes } = await store.promote(c);
            metrics?.cacheBytes(c.spec.name, bytes);
          } catch (err) {
            warn(`cache ${c.spec.name}: ${succeeded ? 'promotion' : 'discard'} failed`, err as Error);
            await store.discard(c).catch(() => undefined);
          }
        }
      },
    };
  }
}
