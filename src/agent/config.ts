/**
 * The agent's configuration: `~/.expo-worker/config.json` (or `--config PATH`), JSON read as
 * `conf` reads it (without loading conf: sys/json-config.ts), validated once, every bad field reported in one `CFG_INVALID` error, the result frozen.
 *
 * Six fields are the minimal config (a six-field file from the first release works verbatim):
 * `vmName`, `vmUser`, `vmSshKey`, `vmIp`, `controllerUrl`, `apiKey`. Every other field is optional; its default is documented on {@link AgentConfig}.
 * `controllerUrl` (and `vmControllerUrl`) may also be a list of URLs: several controllers on one
 * database, tried in turn when one cannot be reached (see controller-client.ts).
 * Unknown fields are refused (a typo would otherwise silently keep a default).
 */
import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { homedir, hostname } from 'node:os';
import { join, resolve } from 'node:path';
import cron from 'node-cron';
import { isWorkerId } from '../protocol/domain.ts';
import { ExpoError } from '../protocol/errors.ts';
import { readJsonConfig } from '../sys/json-config.ts';
import { isSha256Fingerprint } from '../sys/ssh.ts';
import { parseCidr, type VmNetwork } from '../vm/vm-driver.ts';
import { parseCacheConfig, type CacheConfig } from './cache-config.ts';

/** The host-cache fields (`caches`, `cacheDir`, `vmSharedFilesRoot`) are documented in cache-config.ts. */
export interface AgentConfig extends CacheConfig {
  /** The base snapshot each build's VM is cloned from (a local VM name or an OCI reference). */
  readonly vmName: string;
  /** SSH login user in the VM. */
  readonly vmUser: string;
  /** Path of the SSH private key for the VM, `~` expanded. Its contents are never logged. */
  readonly vmSshKey: string;
  /** A fixed VM address from the first config format. Clones get their address from `tart ip`; kept for compatibility. */
  readonly vmIp: string | undefined;
  /** The first controller's base URL (http or https): `controllerUrls[0]`. */
  readonly controllerUrl: string;
  /**
   * Every controller's base URL, in the order they are tried. Config `controllerUrl`: one URL or
   * a non-empty list of them (several controllers on one database; the agent moves to the next
   * when one cannot be reached). Empty only when the doctor runs without a controller.
   */
  readonly controllerUrls: readonly string[];
  /** This worker's API key. Never logged. */
  readonly apiKey: string;
  /** This worker's id. Default: the host name (minus `.local`), sanitized to `[A-Za-z0-9._-]`. */
  readonly workerId: string;
  /** The tart executable. Default: `tart` on PATH, then /opt/homebrew/bin/tart, /usr/local/bin/tart. */
  readonly tartPath: string | undefined;
  /** TART_HOME for tart calls, `~` expanded. Default: tart's own (the agent's `TART_HOME`, else `~/.tart`). */
  readonly tartHome: string | undefined;
  /** Least free disk in a fresh VM, GiB. Default 20. */
  readonly minFreeDiskGb: number;
  /** Least free disk on the host where tart keeps VMs, GiB. Default 10. */
  readonly hostMinFreeDiskGb: number;
  /** Builds (VMs) run at once: 1 or 2 (Apple allows 2 macOS VMs per host). Default 1. */
  readonly maxConcurrentBuilds: 1 | 2;
  /** Seconds between vm-monitor heartbeats. Default 30. */
  readonly heartbeatIntervalS: number;
  /** Seconds a fresh VM's SSH may take to become ready after its IP. Default 120. */
  readonly sshReadyTimeoutS: number;
  /** Seconds `tart ip --wait` may take. Default 120. */
  readonly vmIpWaitS: number;
  /** Seconds `tart stop --timeout` gives a VM. Default 10. */
  readonly vmStopTimeoutS: number;
  /** Seconds a quick tart call (list, set, delete…) may hang before it is killed. Default 30. */
  readonly tartTimeoutS: number;
  /** `host:port` of the Prometheus endpoint. Default `127.0.0.1:9464`. */
  readonly metricsAddress: string;
  /** The first of `vmControllerUrls`. */
  readonly vmControllerUrl: string;
  /** The controller URLs as seen from inside a VM (used by vm-monitor, tried in turn): one URL or a list. Default `controllerUrls`. */
  readonly vmControllerUrls: readonly string[];
  /** Clone name prefix: `<prefix>-<workerId>-<buildId>-<attempt>`. Default `expo`. */
  readonly clonePrefix: string;
  /** Directory of `tart run` logs and of each attempt's local copy of its output. Default `~/.expo-worker/logs`. */
  readonly logDir: string;
  /** Seconds between worker heartbeats (contact and the list of running builds). Default 15. */
  readonly workerHeartbeatS: number;
  /** Longest long-poll, seconds (the controller caps it at 25). Default 25. */
  readonly pollWaitS: number;
  /** Seconds between phase updates that keep a preparing build alive before its monitor runs. Default 15. */
  readonly preparingKeepaliveS: number;
  /** Seconds a stopped step gets between TERM and KILL. Default 10. */
  readonly stepStopGraceS: number;
  /** First wait before polling again when the controller cannot be reached, seconds (doubles to 8×). Default 2. */
  readonly reconnectDelayS: number;
  /** Seconds between re-runs of a failing host preflight (polling is paused meanwhile). Default 30. */
  readonly preflightRetryS: number;
  /** When to reap orphaned clones and re-run the preflight (cron syntax). Default every 10 minutes. */
  readonly maintenanceCron: string;
  /** How long a result (last log bytes, completion) is retried while the controller is away, seconds. Default 3600. */
  readonly reportDeadlineS: number;
  /**
   * The base image's SSH host key fingerprints (`SHA256:…`, as `ssh-keygen -l` and
   * `expo-worker doctor` print them); a clone answering with another key fails its health
   * check before any credential is sent. Config: a string or a list (e.g. old and new image).
   * Default: empty, not pinned (any key accepted; doctor warns).
   */
  readonly vmHostKey: readonly string[];
  /**
   * The clones' network. Config `vmNetwork: {"isolation": "softnet", "allow": ["10.0.0.5/32"]}`
   * runs them with `tart run --net-softnet --net-softnet-allow …`; the controller's address
   * (of each `vmControllerUrls` entry) is allowed automatically when it is an IPv4 literal; otherwise `allow`
   * must not be empty. Prefix length 0 and numbers with leading zeros are refused. Default
   * `{"isolation": "shared"}` (tart's NAT: the VM reaches everything its host reaches).
   */
  readonly vmNetwork: VmNetwork;
  /** Days a `tart run` log of a failed or aborted VM, and an attempt's output copy, is kept in `logDir`. Default 7. */
  readonly vmLogRetentionDays: number;
  /** Most `tart run` logs kept in `logDir`, and most attempt output copies (the oldest go first). Default 100. */
  readonly vmLogMaxFiles: number;
  /**
   * Pre-booted, health-checked VMs kept ready while a slot is free: 0 (off) or 1 (see
   * standby.ts). A standby counts against the two-VM limit. Default 0.
   */
  readonly standby: 0 | 1;
  /** Seconds a standby VM may wait for a build before it is replaced by a fresh one. Default 3600. */
  readonly standbyMaxAgeS: number;
}

/** The default config file. */
export const defaultConfigPath = (): string => join(homedir(), '.expo-worker', 'config.json');

/** `~` and `~/…` expanded against the home directory. */
export function expandHome(path: string, home = homedir()): string {
  if (path === '~') return home;
  if (path.startsWith('~/')) return join(home, path.slice(2));
  return path;
}

/** The host name as a worker id: `.local` dropped, other characters replaced by `-`. */
export function defaultWorkerId(host = hostname()): string {
  const id = host
    .replace(/\.local$/i, '')
    .replace(/[^A-Za-z0-9._-]/g, '-')
    .replace(/^[^A-Za-z0-9]+/, '')
    .slice(0, 63);
  return id === '' ? 'worker' : id;
}

type Raw = Record<string, unknown>;

const BASE_FIELDS = ['vmName', 'vmUser', 'vmSshKey', 'vmIp', 'controllerUrl', 'apiKey'] as const;
const OPTIONAL_FIELDS = [
  'workerId', 'tartPath', 'tartHome', 'minFreeDiskGb', 'hostMinFreeDiskGb', 'maxConcurrentBuilds',
  'heartbeatIntervalS', 'sshReadyTimeoutS', 'vmIpWaitS', 'vmStopTimeoutS', 'tartTimeoutS',
  'metricsAddress', 'vmControllerUrl', 'clonePrefix', 'logDir',
  'workerHeartbeatS', 'pollWaitS', 'preparingKeepaliveS', 'stepStopGraceS', 'reconnectDelayS', 'preflightRetryS',
  'maintenanceCron', 'reportDeadlineS', 'vmHostKey', 'vmNetwork', 'vmLogRetentionDays', 'vmLogMaxFiles',
  'standby', 'standbyMaxAgeS',
  'caches', 'cacheDir', 'vmSharedFilesRoot',
] as const;
const KNOWN = new Set<string>([...BASE_FIELDS, ...OPTIONAL_FIELDS]);

class Fields {
  readonly problems: string[] = [];
  private readonly raw: Raw;
  constructor(raw: Raw) {
    this.raw = raw;
  }
  bad(field: string, why: string): undefined {
    this.problems.push(`${field}: ${why}`);
    return undefined;
  }
  /** One URL or a non-empty list of distinct ones, each passing `test`; undefined when absent or bad. */
  urls(field: string, required: boolean, test: (s: string) => string | null): string[] | undefined {
    const v = this.raw[field];
    if (!Array.isArray(v)) {
      const one = this.string(field, required, test);
      return one === undefined ? undefined : [one];
    }
    if (v.length === 0) return this.bad(field, 'must be a URL or a non-empty list of URLs');
    const seen = new Set<string>();
    let ok = true;
    v.forEach((x: unknown, i) => {
      const why = typeof x !== 'string' || x.trim() === '' ? 'must be a non-empty string' : test(x);
      if (why !== null) {
        ok = false;
        this.bad(`${field}[${i}]`, why);
        return;
      }
      // The same controller twice would only double the wait before a real switch.
      const key = new URL(x as string).href.replace(/\/+$/, '');
      if (seen.has(key)) {
        ok = false;
        this.bad(`${field}[${i}]`, `${JSON.stringify(x)} is listed twice`);
      }
      seen.add(key);
    });
    return ok ? (v as string[]) : undefined;
  }
  string(field: string, required: boolean, test?: (s: string) => string | null): string | undefined {
    const v = this.raw[field];
    if (v === undefined || v === null) return required ? this.bad(field, 'is required') : undefined;
    if (typeof v !== 'string' || v.trim() === '') return this.bad(field, 'must be a non-empty string');
    const why = test?.(v) ?? null;
    return why === null ? v : this.bad(field, why);
  }
  number(field: string, fallback: number, opts: { min: number; max?: number; integer?: boolean; exclusiveMin?: boolean }): number {
    const v = this.raw[field];
    if (v === undefined || v === null) return fallback;
    const range = `${opts.exclusiveMin ? '>' : '≥'} ${opts.min}${opts.max === undefined ? '' : ` and ≤ ${opts.max}`}`;
    if (typeof v !== 'number' || !Number.isFinite(v)) return this.bad(field, `must be a number ${range}`) ?? fallback;
    if (opts.integer && !Number.isInteger(v)) return this.bad(field, `must be an integer ${range}`) ?? fallback;
    if ((opts.exclusiveMin ? v <= opts.min : v < opts.min) || (opts.max !== undefined && v > opts.max)) {
      return this.bad(field, `must be ${range} (got ${v})`) ?? fallback;
    }
    return v;
  }
}

const httpUrl = (s: string): string | null => {
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    return `must be an http(s) URL (got ${JSON.stringify(s)})`;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return `must be an http(s) URL (got ${u.protocol})`;
  // new URL() trims and percent-encodes whitespace, but the raw string is what is kept and what
  // vm-monitor.sh receives in a space-separated list: a blank in it would split one URL in two.
  return /\s/.test(s) ? `must be an http(s) URL without whitespace (got ${JSON.stringify(s)})` : null;
};
const ipv4 = (s: string): string | null =>
  /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/.test(s) ? null : 'must be an IPv4 address';
const noSpace = (s: string): string | null => (/\s/.test(s) ? 'must not contain whitespace' : null);

const FINGERPRINT_HINT = 'must be an OpenSSH fingerprint "SHA256:" + 43 base64 characters (ssh-keygen -l -E sha256 -f KEY.pub, or expo-worker doctor)';

function parseHostKey(f: Fields, v: unknown): string[] {
  if (v === undefined || v === null) return [];
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list) || list.length === 0 || !list.every((x) => typeof x === 'string')) {
    return f.bad('vmHostKey', `${FINGERPRINT_HINT}, or a non-empty list of them`) ?? [];
  }
  const bad = list.filter((x) => !isSha256Fingerprint(x));
  if (bad.length > 0) return f.bad('vmHostKey', `${FINGERPRINT_HINT} (got ${JSON.stringify(bad[0])})`) ?? [];
  return [...new Set(list)];
}

function parseNetwork(f: Fields, v: unknown, controllerUrls: readonly string[]): VmNetwork {
  const shared: VmNetwork = { isolation: 'shared' };
  if (v === undefined || v === null) return shared;
  if (typeof v !== 'object' || Array.isArray(v)) return f.bad('vmNetwork', 'must be an object like {"isolation": "softnet", "allow": ["10.0.0.5/32"]}') ?? shared;
  const o = v as Raw;
  for (const k of Object.keys(o)) if (k !== 'isolation' && k !== 'allow') f.bad(`vmNetwork.${k}`, 'unknown field (isolation, allow)');
  if (o.isolation === 'shared') {
    if (o.allow !== undefined) f.bad('vmNetwork.allow', 'needs "isolation": "softnet"');
    return shared;
  }
  if (o.isolation !== 'softnet') return f.bad('vmNetwork.isolation', 'must be "shared" or "softnet"') ?? shared;
  const allow = o.allow ?? [];
  if (!Array.isArray(allow) || !allow.every((x) => typeof x === 'string')) return f.bad('vmNetwork.allow', 'must be a list of IPv4 CIDRs like "10.0.0.5/32"') ?? shared;
  const cidrs: string[] = [];
  for (const a of allow) {
    const why = allowProblem(a);
    if (why !== null) f.bad('vmNetwork.allow', `${JSON.stringify(a)} ${why}`);
    else cidrs.push(parseCidr(a)!);
  }
  // The VM's vm-monitor and steps talk to the controller: allow it when its address is known.
  // A host name is not resolved (its address may change under a running agent) and softnet takes
  // IPv4 only, so such a controller is unreachable from an isolated VM unless the user lists it.
  // Every controller of the list: a VM must reach whichever one is up.
  for (const url of controllerUrls) {
    if (!URL.canParse(url)) continue;
    const host = new URL(url).hostname;
    const own = parseCidr(`${host}/32`);
    if (own !== null) cidrs.push(own);
    else if (allow.length === 0) {
      f.bad(
        'vmNetwork.allow',
        `the controller (${host}) is not an IPv4 address, so softnet cannot allow it by itself and build VMs could not reach it: add the controller's IPv4 CIDR to "allow" (e.g. "10.0.0.5/32"), or set vmControllerUrl to a URL with an IPv4 literal`,
      );
    }
  }
  return { isolation: 'softnet', allow: [...new Set(cidrs)] };
}

/** Why `a` is not an allow-list entry, or null: an IPv4 CIDR, no leading zeros, a prefix of 1–32 bits. */
function allowProblem(a: string): string | null {
  if (parseCidr(a) === null) return 'is not an IPv4 CIDR like "10.0.0.5/32" (names are not resolved: list addresses)';
  // `010.0.0.1` is octal 8.0.0.1 to inet_aton and decimal 10.0.0.1 to others: refuse, never guess.
  if (a.trim().split(/[./]/).some((part) => part.length > 1 && part.startsWith('0'))) return 'has a number with a leading zero (read as octal by some tools): write it without';
  if (a.trim().endsWith('/0')) return 'allows everything (prefix length 0), which defeats isolation: use "isolation": "shared" instead';
  return null;
}

/** Options of {@link parseAgentConfig}. */
export interface ParseOptions {
  /** Whether `controllerUrl` and `apiKey` are required (the doctor can do without). Default true. */
  requireController?: boolean;
  /** Check that `vmSshKey` names a readable file. Default true. */
  checkFiles?: boolean;
  /** Home directory for `~`. Default `os.homedir()`. */
  home?: string;
  /** Host name for the default worker id. Default `os.hostname()`. */
  hostName?: string;
}

/** Validates raw config data; throws one `CFG_INVALID` naming every bad field. */
export function parseAgentConfig(raw: unknown, options: ParseOptions = {}): AgentConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ExpoError('CFG_INVALID', 'invalid agent config: expected a JSON object', { details: { problems: ['(root): must be an object'] } });
  }
  const r = raw as Raw;
  const f = new Fields(r);
  const home = options.home ?? homedir();
  const requireController = options.requireController ?? true;
  for (const key of Object.keys(r)) if (!KNOWN.has(key)) f.bad(key, 'unknown field (misspelt?)');

  const vmName = f.string('vmName', true, noSpace);
  const vmUser = f.string('vmUser', true, (s) => (/^[A-Za-z_][A-Za-z0-9_.-]*$/.test(s) ? null : 'must be a user name'));
  let vmSshKey = f.string('vmSshKey', true);
  if (vmSshKey !== undefined) {
    vmSshKey = resolve(expandHome(vmSshKey, home));
    if (options.checkFiles ?? true) {
      try {
        accessSync(vmSshKey, constants.R_OK);
        if (!statSync(vmSshKey).isFile()) f.bad('vmSshKey', `${vmSshKey} is not a file`);
      } catch {
        f.bad('vmSshKey', `cannot read ${vmSshKey}`);
      }
    }
  }
  const vmIp = f.string('vmIp', false, ipv4);
  const controllerUrls = f.urls('controllerUrl', requireController, httpUrl);
  const apiKey = f.string('apiKey', requireController);
  const workerId = f.string('workerId', false, (s) => (isWorkerId(s) ? null : 'must match [A-Za-z0-9][A-Za-z0-9._-]{0,62}'));
  const tartPath = f.string('tartPath', false);
  const tartHome = f.string('tartHome', false);
  const maxConcurrentBuilds = f.number('maxConcurrentBuilds', 1, { min: 1, max: 2, integer: true });
  const metricsAddress = f.string('metricsAddress', false, (s) =>
    /^[A-Za-z0-9.:[\]-]+:\d{1,5}$/.test(s) && Number(s.slice(s.lastIndexOf(':') + 1)) <= 65535 ? null : 'must be host:port',
  );
  const vmControllerUrls = f.urls('vmControllerUrl', false, httpUrl) ?? controllerUrls ?? [];
  const clonePrefix = f.string('clonePrefix', false, (s) =>
    /^[A-Za-z0-9][A-Za-z0-9._]{0,31}$/.test(s) ? null : 'must be letters, digits, . or _ (no -), at most 32',
  );
  const logDir = f.string('logDir', false);
  const maintenanceCron = f.string('maintenanceCron', false, (s) => (cron.validate(s) ? null : 'must be a cron expression (e.g. "*/10 * * * *")'));
  const config: AgentConfig = {
    vmName: vmName ?? '',
    vmUser: vmUser ?? '',
    vmSshKey: vmSshKey ?? '',
    vmIp,
    controllerUrl: controllerUrls?.[0] ?? '',
    controllerUrls: Object.freeze(controllerUrls ?? []),
    apiKey: apiKey ?? '',
    workerId: workerId ?? defaultWorkerId(options.hostName),
    tartPath: tartPath === undefined ? undefined : expandHome(tartPath, home),
    tartHome: tartHome === undefined ? undefined : resolve(expandHome(tartHome, home)),
    minFreeDiskGb: f.number('minFreeDiskGb', 20, { min: 0 }),
    hostMinFreeDiskGb: f.number('hostMinFreeDiskGb', 10, { min: 0 }),
    maxConcurrentBuilds: maxConcurrentBuilds === 2 ? 2 : 1,
    heartbeatIntervalS: f.number('heartbeatIntervalS', 30, { min: 0, exclusiveMin: true }),
    sshReadyTimeoutS: f.number('sshReadyTimeoutS', 120, { min: 0, exclusiveMin: true }),
    vmIpWaitS: f.number('vmIpWaitS', 120, { min: 0 }),
    vmStopTimeoutS: f.number('vmStopTimeoutS', 10, { min: 0 }),
    tartTimeoutS: f.number('tartTimeoutS', 30, { min: 0, exclusiveMin: true }),
    metricsAddress: metricsAddress ?? '127.0.0.1:9464',
    vmControllerUrl: vmControllerUrls[0] ?? '',
    vmControllerUrls: Object.freeze(vmControllerUrls),
    clonePrefix: clonePrefix ?? 'expo',
    logDir: resolve(expandHome(logDir ?? '~/.expo-worker/logs', home)),
    workerHeartbeatS: f.number('workerHeartbeatS', 15, { min: 0, exclusiveMin: true }),
    pollWaitS: f.number('pollWaitS', 25, { min: 0, max: 25 }),
    preparingKeepaliveS: f.number('preparingKeepaliveS', 15, { min: 0, exclusiveMin: true }),
    stepStopGraceS: f.number('stepStopGraceS', 10, { min: 0 }),
    reconnectDelayS: f.number('reconnectDelayS', 2, { min: 0, exclusiveMin: true }),
    preflightRetryS: f.number('preflightRetryS', 30, { min: 0, exclusiveMin: true }),
    maintenanceCron: maintenanceCron ?? '*/10 * * * *',
    reportDeadlineS: f.number('reportDeadlineS', 3600, { min: 0, exclusiveMin: true }),
    vmHostKey: Object.freeze(parseHostKey(f, r.vmHostKey)),
    vmNetwork: parseNetwork(f, r.vmNetwork, vmControllerUrls),
    vmLogRetentionDays: f.number('vmLogRetentionDays', 7, { min: 0 }),
    vmLogMaxFiles: f.number('vmLogMaxFiles', 100, { min: 0, integer: true }),
    standby: f.number('standby', 0, { min: 0, max: 1, integer: true }) === 1 ? 1 : 0,
    standbyMaxAgeS: f.number('standbyMaxAgeS', 3600, { min: 60 }),
    ...parseCacheConfig(r, (field, why) => f.bad(field, why), (p) => expandHome(p, home)),
  };
  if (f.problems.length > 0) {
    throw new ExpoError('CFG_INVALID', `invalid agent config:\n  - ${f.problems.join('\n  - ')}`, { details: { problems: f.problems } });
  }
  return Object.freeze(config);
}

/** Reads and validates the config file (default {@link defaultConfigPath}): JSON, read as `conf` reads it (sys/json-config.ts). */
export function loadAgentConfig(path: string = defaultConfigPath(), options: ParseOptions = {}): AgentConfig {
  const file = resolve(expandHome(path, options.home));
  // A missing config is an error here (conf, which the other commands use, would create it).
  if (!existsSync(file)) {
    throw new ExpoError('CFG_INVALID', `agent config not found: ${file} (create it with vmName, vmUser, vmSshKey, controllerUrl, apiKey)`, {
      details: { problems: [`(file): ${file} does not exist`], path: file },
    });
  }
  let store: unknown;
  try {
    store = readJsonConfig(file);
  } catch (err) {
    throw new ExpoError('CFG_INVALID', `agent config ${file} is not valid JSON: ${(err as Error).message}`, {
      cause: err,
      details: { problems: [`(file): not valid JSON`], path: file },
    });
  }
  try {
    return parseAgentConfig(store, options);
  } catch (err) {
    if (err instanceof ExpoError) err.message = err.message.replace('invalid agent config', `invalid agent config ${file}`);
    throw err;
  }
}
