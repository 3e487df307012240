/**
 * The controller's configuration: flags, then `EXPO_CONTROLLER_*` environment variables, then
 * defaults. Validated once at start — every bad value is named in one error — and frozen.
 */
import { createPrivateKey } from 'node:crypto';
import { chmodSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { isIP } from 'node:net';
import { parseArgs } from 'node:util';
import cron from 'node-cron';
import { ExpoError } from '../protocol/errors.ts';
import { DEFAULT_GITHUB_API_URL } from '../github/client.ts';
import { DEFAULT_PREPARE_TIMEOUT_MS } from '../protocol/liveness.ts';
import { LOG_FORMATS, type LogFormat } from '../sys/logger.ts';
import { isPostgresUrl, redactDbUrl } from './store/db-url.ts';

export interface ControllerConfig {
  /** TCP port. Default 3000. */
  port: number;
  /** Address to bind. Default 127.0.0.1 (put a TLS reverse proxy in front for other hosts). */
  host: string;
  /** SQLite database file (`--db PATH`); '' when `dbUrl` is set. */
  dbPath: string;
  /** PostgreSQL database (`--db postgres://…`); null for SQLite. Never logged with its password (`redactDbUrl`). */
  dbUrl: string | null;
  /**
   * The controller's private directory: the secret-env key (`secret-env.key`) and, by default,
   * the artifact directory. SQLite: the database file's directory. PostgreSQL: `--data-dir`
   * (required), the same key file on every controller of the farm.
   */
  dataDir: string;
  /** Where artifact bytes live when not in `artifactsDir`: an S3-compatible bucket (`--artifacts s3://…`). Null: the directory. */
  artifactsS3: S3Location | null;
  /** The admin API key. Required; at least 16 characters. */
  apiKey: string;
  /** Heartbeat silence after which a build fails and a worker goes offline, in ms. Default 120 000. */
  heartbeatTimeoutMs: number;
  /** Per-build log cap, in bytes. Default 64 MiB. */
  maxLogBytes: number;
  /** Where artifact files are kept. Default `artifacts/` beside the database. */
  artifactsDir: string;
  /** The largest artifact accepted, in bytes. Default 4 GiB. */
  maxArtifactBytes: number;
  /** Build timeout when a submission names none, in seconds. Default 3600. */
  defaultBuildTimeoutS: number;
  /** How long a claimed build may prepare (clone, boot, health checks) before it fails `prepare_timeout`, in ms. Default 600 000. */
  prepareTimeoutMs: number;
  /** pino level. Default info. */
  logLevel: string;
  /** Final builds (with logs and artifacts) older than this many days are deleted; 0 keeps them forever. Default 30. */
  retentionDays: number;
  /** When the retention job runs (cron syntax). Default hourly, at minute 17. */
  retentionSchedule: string;
  /** Log format: `auto` (pretty on a terminal, JSON otherwise; the default), `json` or `pretty`. */
  logFormat: LogFormat;
  /** The secret GitHub signs webhook deliveries with; null (the default) refuses every delivery. At least 16 characters. Never logged. */
  githubSecret: string | null;
  /** A token for GitHub's API (`Authorization: Bearer`); null without one. Exclusive with the App. Never logged. */
  githubToken: string | null;
  /** The GitHub App's id (or client id); set together with `githubPrivateKey`. */
  githubAppId: string | null;
  /** The GitHub App's RSA private key (PEM), read from `githubPrivateKeyPath` at start. Never logged. */
  githubPrivateKey: string | null;
  githubPrivateKeyPath: string | null;
  /** GitHub's REST API. Default `https://api.github.com`; http only for a loopback host. */
  githubApiUrl: string;
  /** Where repositories are cloned from. Default `https://github.com` with the default API, else the API URL's origin. */
  githubWebUrl: string;
  /**
   * The controller as users reach it: links on GitHub (statuses, check runs), the origin a
   * sign-in may come from, the `Secure` cookie and HSTS when https; null: none of these.
   */
  publicUrl: string | null;
  /**
   * Which proxies' `X-Forwarded-For/-Proto/-Host` to believe (Fastify's `trustProxy`): false
   * (none, the default), true (any peer: only when nothing else can reach the controller), or
   * the proxies' addresses and CIDR ranges.
   */
  trustProxy: boolean | readonly string[];
  /** What reading the configuration changed or noticed (a key file's mode narrowed), for the log. */
  startupWarnings: readonly string[];
}

/** An S3 bucket and key prefix, and how to reach the service (`--artifacts s3://bucket/prefix`). */
export interface S3Location {
  bucket: string;
  /** Key prefix without leading or trailing slash; '' for the bucket's root. */
  prefix: string;
  /** `--s3-endpoint` (MinIO, R2, Ceph, s3rver…); null: AWS's own for the region. */
  endpoint: string | null;
  /** `--s3-region`, else AWS_REGION / AWS_DEFAULT_REGION, else us-east-1. */
  region: string;
  /** Path-style URLs (`endpoint/bucket/key`): on with an endpoint, as MinIO and most others need. */
  forcePathStyle: boolean;
}

export const CONTROLLER_HELP = `Usage: expo-worker controller --db PATH --api-key KEY [options]

Runs the controller: the build queue, long-poll dispatch, heartbeats and the watchdog.

Options (each also read from the environment variable shown):
  --port N                   TCP port (EXPO_CONTROLLER_PORT, default 3000)
  --host ADDR                address to bind (EXPO_CONTROLLER_HOST, default 127.0.0.1)
  --db PATH|URL              SQLite database file, created if missing, or a PostgreSQL database
                             postgres://user:password@host:5432/name for several controllers
                             (EXPO_CONTROLLER_DB; prefer the variable when the URL has a password)
  --data-dir DIR             the controller's private directory: secret-env.key and default
                             artifacts/ (EXPO_CONTROLLER_DATA_DIR; default the SQLite file's
                             directory; required with PostgreSQL, with the same secret-env.key
                             on every controller)
  --api-key KEY              admin API key, 16+ characters (EXPO_CONTROLLER_API_KEY)
  --heartbeat-timeout S      seconds of heartbeat silence before a build fails and a worker
                             goes offline; decimals allowed (EXPO_CONTROLLER_HEARTBEAT_TIMEOUT,
                             default 120)
  --max-log-mb N             per-build log cap in MiB (EXPO_CONTROLLER_MAX_LOG_MB, default 64)
  --artifacts-dir DIR        where artifacts are kept (EXPO_CONTROLLER_ARTIFACTS_DIR, default
                             artifacts/ beside the database)
  --artifacts s3://B/P       keep artifacts in an S3-compatible bucket B under prefix P instead
                             of --artifacts-dir; credentials from the standard AWS chain
                             (AWS_ACCESS_KEY_ID…, ~/.aws, instance roles) (EXPO_CONTROLLER_ARTIFACTS)
  --s3-endpoint URL          the S3 service for MinIO, R2, Ceph… (EXPO_CONTROLLER_S3_ENDPOINT;
                             default AWS), path-style addressing
  --s3-region R              (EXPO_CONTROLLER_S3_REGION, default AWS_REGION or us-east-1)
  --max-artifact-mb N        largest artifact in MiB (EXPO_CONTROLLER_MAX_ARTIFACT_MB, default 4096)
  --default-build-timeout S  build timeout when a submission names none
                             (EXPO_CONTROLLER_DEFAULT_BUILD_TIMEOUT, default 3600); it
                             covers the steps and artifact upload, not VM preparation
  --prepare-timeout S        seconds a claimed build may spend preparing its VM (clone, boot,
                             health checks, monitor start, host cache copies) before it fails
                             prepare_timeout and may be retried;
                             decimals allowed (EXPO_CONTROLLER_PREPARE_TIMEOUT, default 600)
  --retention-days N         final builds, their logs and artifacts are deleted this many days
                             after they finished; 0 keeps them forever; decimals allowed
                             (EXPO_CONTROLLER_RETENTION_DAYS, default 30)
  --retention-schedule CRON  when the retention job runs, which also removes abandoned
                             .partial uploads (EXPO_CONTROLLER_RETENTION_SCHEDULE,
                             default "17 * * * *": hourly)
  --github-secret SECRET     the secret of the GitHub webhook (POST /webhooks/github), 16+
                             characters; without it every delivery is refused with 503
                             (EXPO_CONTROLLER_GITHUB_SECRET; see docs/github.md). Prefer the
                             environment variable: a flag is visible in the process list
  --github-token TOKEN       a token for GitHub's API: reads pipeline files, posts commit statuses
                             and clones private repositories (EXPO_CONTROLLER_GITHUB_TOKEN);
                             exclusive with the App. Prefer the environment variable
  --github-app-id ID         the GitHub App's id, for check runs and repository-scoped tokens
                             (EXPO_CONTROLLER_GITHUB_APP_ID); needs --github-private-key
  --github-private-key PATH  the App's private key, a PEM file, mode 0600 (narrowed when wider)
                             (EXPO_CONTROLLER_GITHUB_PRIVATE_KEY)
  --github-api-url URL       GitHub's API (EXPO_CONTROLLER_GITHUB_API_URL, default
                             https://api.github.com; GitHub Enterprise: https://HOST/api/v3)
  --github-web-url URL       where repositories are cloned from (EXPO_CONTROLLER_GITHUB_WEB_URL,
                             default https://github.com, or the API URL's origin when that is set)
  --public-url URL           the controller as users reach it: links from GitHub to builds, and
                             behind HTTPS needed to sign in (the Origin a browser sends) and for
                             the Secure cookie and HSTS (EXPO_CONTROLLER_PUBLIC_URL; default none)
  --trust-proxy WHICH        believe X-Forwarded-For/-Proto/-Host from: false (default), true (any
                             peer), or a comma list of the proxies' addresses/CIDRs such as
                             127.0.0.1,10.0.0.0/8 (EXPO_CONTROLLER_TRUST_PROXY); behind a reverse
                             proxy it gives the client's address to the sign-in limit and audit
  --log-level LEVEL          fatal|error|warn|info|debug|trace (EXPO_CONTROLLER_LOG_LEVEL, default info)
  --log-format F             auto|json|pretty: auto is readable lines on a terminal and JSON
                             otherwise (EXPO_CONTROLLER_LOG_FORMAT, default auto)
  -h, --help                 show this help
`;

const OPTIONS = {
  port: { type: 'string' },
  host: { type: 'string' },
  db: { type: 'string' },
  'data-dir': { type: 'string' },
  artifacts: { type: 'string' },
  's3-endpoint': { type: 'string' },
  's3-region': { type: 'string' },
  'api-key': { type: 'string' },
  'heartbeat-timeout': { type: 'string' },
  'max-log-mb': { type: 'string' },
  'artifacts-dir': { type: 'string' },
  'max-artifact-mb': { type: 'string' },
  'default-build-timeout': { type: 'string' },
  'prepare-timeout': { type: 'string' },
  'log-level': { type: 'string' },
  'retention-days': { type: 'string' },
  'retention-schedule': { type: 'string' },
  'log-format': { type: 'string' },
  'github-secret': { type: 'string' },
  'github-token': { type: 'string' },
  'github-app-id': { type: 'string' },
  'github-private-key': { type: 'string' },
  'github-api-url': { type: 'string' },
  'github-web-url': { type: 'string' },
  'public-url': { type: 'string' },
  'trust-proxy': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export type ParsedArgs = { help: true } | { help: false; config: Readonly<ControllerConfig> };

export function parseControllerArgs(argv: string[], env: NodeJS.ProcessEnv): ParsedArgs {
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({ args: argv, options: OPTIONS, strict: true, allowPositionals: false }).values;
  } catch (err) {
    throw new ExpoError('CFG_INVALID', `${(err as Error).message}\n\n${CONTROLLER_HELP}`);
  }
  if (values.help) return { help: true };
  const pick = (flag: string, envName: string): string | undefined => (values[flag] as string | undefined) ?? env[envName];
  const problems: string[] = [];
  const number = (flag: string, envName: string, dflt: number, check: (n: number) => boolean, rule: string): number => {
    const raw = pick(flag, envName);
    if (raw === undefined) return dflt;
    const n = Number(raw);
    if (raw.trim() === '' || !Number.isFinite(n) || !check(n)) {
      problems.push(`--${flag} (${envName}): '${raw}' is not ${rule}`);
      return dflt;
    }
    return n;
  };
  const port = number('port', 'EXPO_CONTROLLER_PORT', 3000, (n) => Number.isInteger(n) && n >= 0 && n <= 65535, 'a port number (0-65535)');
  const timeoutS = number('heartbeat-timeout', 'EXPO_CONTROLLER_HEARTBEAT_TIMEOUT', 120, (n) => n >= 0.1 && n <= 86400, 'a number of seconds between 0.1 and 86400');
  const maxArtifactMb = number('max-artifact-mb', 'EXPO_CONTROLLER_MAX_ARTIFACT_MB', 4096, (n) => n > 0 && n <= 1024 * 1024, 'a size in MiB between 1 and 1048576');
  const maxLogMb = number('max-log-mb', 'EXPO_CONTROLLER_MAX_LOG_MB', 64, (n) => n > 0 && n <= 4096, 'a size in MiB between 1 and 4096');
  const defaultBuildTimeoutS = number('default-build-timeout', 'EXPO_CONTROLLER_DEFAULT_BUILD_TIMEOUT', 3600, (n) => Number.isInteger(n) && n >= 1 && n <= 604800, 'a whole number of seconds between 1 and 604800');
  const prepareTimeoutS = number('prepare-timeout', 'EXPO_CONTROLLER_PREPARE_TIMEOUT', DEFAULT_PREPARE_TIMEOUT_MS / 1000, (n) => n >= 0.1 && n <= 86400, 'a number of seconds between 0.1 and 86400');
  const retentionDays = number('retention-days', 'EXPO_CONTROLLER_RETENTION_DAYS', 30, (n) => n >= 0 && n <= 36500, 'a number of days between 0 (keep forever) and 36500');
  const retentionSchedule = pick('retention-schedule', 'EXPO_CONTROLLER_RETENTION_SCHEDULE') ?? '17 * * * *';
  if (!cron.validate(retentionSchedule)) problems.push(`--retention-schedule (EXPO_CONTROLLER_RETENTION_SCHEDULE): '${retentionSchedule}' is not a cron expression (e.g. "17 * * * *")`);
  const host = pick('host', 'EXPO_CONTROLLER_HOST') ?? '127.0.0.1';
  if (host.trim() === '') problems.push('--host (EXPO_CONTROLLER_HOST): must not be empty');
  const db = pick('db', 'EXPO_CONTROLLER_DB');
  if (db === undefined || db === '') problems.push('--db (EXPO_CONTROLLER_DB): required — the SQLite database file, or a postgres:// URL');
  const dbUrl = db !== undefined && isPostgresUrl(db) ? db : null;
  if (dbUrl !== null && !URL.canParse(dbUrl)) problems.push(`--db (EXPO_CONTROLLER_DB): '${redactDbUrl(dbUrl)}' is not a URL`);
  const dbPath = dbUrl === null ? db : '';
  const dataDirFlag = pick('data-dir', 'EXPO_CONTROLLER_DATA_DIR');
  if (dbUrl !== null && (dataDirFlag === undefined || dataDirFlag === '')) problems.push('--data-dir (EXPO_CONTROLLER_DATA_DIR): required with a PostgreSQL --db — where secret-env.key is kept (the same key on every controller)');
  const dataDir = dataDirFlag !== undefined && dataDirFlag !== '' ? dataDirFlag : dirname(dbPath ?? '.');
  const artifactsS3 = s3Location(pick, problems, env);
  const apiKey = pick('api-key', 'EXPO_CONTROLLER_API_KEY');
  if (apiKey === undefined || apiKey === '') problems.push('--api-key (EXPO_CONTROLLER_API_KEY): required — the admin API key');
  else if (apiKey.length < 16 || /\s/.test(apiKey)) problems.push('--api-key (EXPO_CONTROLLER_API_KEY): must be at least 16 characters with no spaces');
  const logLevel = pick('log-level', 'EXPO_CONTROLLER_LOG_LEVEL') ?? 'info';
  if (!LEVELS.includes(logLevel)) problems.push(`--log-level (EXPO_CONTROLLER_LOG_LEVEL): '${logLevel}' is not one of ${LEVELS.join(', ')}`);
  const logFormat = pick('log-format', 'EXPO_CONTROLLER_LOG_FORMAT') ?? 'auto';
  if (!(LOG_FORMATS as readonly string[]).includes(logFormat)) problems.push(`--log-format (EXPO_CONTROLLER_LOG_FORMAT): '${logFormat}' is not one of ${LOG_FORMATS.join(', ')}`);
  const githubSecret = pick('github-secret', 'EXPO_CONTROLLER_GITHUB_SECRET') ?? null;
  // The value itself is never echoed: a typo in it would put the secret in the error.
  if (githubSecret !== null && githubSecret.length < 16) problems.push('--github-secret (EXPO_CONTROLLER_GITHUB_SECRET): must be at least 16 characters');
  const github = githubSettings(pick, problems);
  const trustProxy = parseTrustProxy(pick('trust-proxy', 'EXPO_CONTROLLER_TRUST_PROXY'), problems);
  if (problems.length > 0) {
    throw new ExpoError('CFG_INVALID', `invalid controller configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`, { details: { problems } });
  }
  return {
    help: false,
    config: Object.freeze({
      port,
      host,
      dbPath: dbPath!,
      dbUrl,
      dataDir,
      artifactsS3,
      trustProxy,
      apiKey: apiKey!,
      heartbeatTimeoutMs: Math.round(timeoutS * 1000),
      maxLogBytes: Math.round(maxLogMb * 1024 * 1024),
      artifactsDir: pick('artifacts-dir', 'EXPO_CONTROLLER_ARTIFACTS_DIR') ?? join(dataDir, 'artifacts'),
      maxArtifactBytes: Math.round(maxArtifactMb * 1024 * 1024),
      defaultBuildTimeoutS,
      prepareTimeoutMs: Math.round(prepareTimeoutS * 1000),
      logLevel,
      retentionDays,
      retentionSchedule,
      logFormat: logFormat as LogFormat,
      githubSecret,
      ...github,
    }),
  };
}

/** `--artifacts s3://bucket/prefix` with its endpoint and region; null without `--artifacts`. */
function s3Location(pick: (flag: string, envName: string) => string | undefined, problems: string[], env: NodeJS.ProcessEnv): S3Location | null {
  const raw = pick('artifacts', 'EXPO_CONTROLLER_ARTIFACTS');
  const endpointRaw = pick('s3-endpoint', 'EXPO_CONTROLLER_S3_ENDPOINT');
  const regionRaw = pick('s3-region', 'EXPO_CONTROLLER_S3_REGION');
  if (raw === undefined) {
    if (endpointRaw !== undefined || regionRaw !== undefined) problems.push('--s3-endpoint/--s3-region: only with --artifacts s3://bucket/prefix');
    return null;
  }
  // Bucket names: 3–63 of a-z 0-9 . - (S3's rules); the prefix: printable, no `..` segment.
  const m = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/.exec(raw);
  const prefix = (m?.[2] ?? '').replace(/^\/+|\/+$/g, '');
  if (m === null || !/^[\x21-\x7e]*$/.test(prefix) || prefix.split('/').some((s) => s === '..' || s === '.')) {
    problems.push(`--artifacts (EXPO_CONTROLLER_ARTIFACTS): '${raw.slice(0, 200)}' is not s3://bucket or s3://bucket/prefix (a bucket name of 3–63 lower-case letters, digits, dots and hyphens)`);
    return null;
  }
  let endpoint: string | null = null;
  if (endpointRaw !== undefined) {
    const problem = urlProblem(endpointRaw, false);
    if (problem !== null) problems.push(`--s3-endpoint (EXPO_CONTROLLER_S3_ENDPOINT): '${endpointRaw.slice(0, 200)}' ${problem}`);
    else endpoint = endpointRaw.replace(/\/+$/, '');
  }
  const region = regionRaw ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? 'us-east-1';
  if (!/^[a-z0-9-]{1,40}$/.test(region)) problems.push(`--s3-region (EXPO_CONTROLLER_S3_REGION): '${region.slice(0, 60)}' is not a region name`);
  return { bucket: m[1]!, prefix, endpoint, region, forcePathStyle: endpoint !== null };
}

type GithubSettings = Pick<ControllerConfig, 'githubToken' | 'githubAppId' | 'githubPrivateKey' | 'githubPrivateKeyPath' | 'githubApiUrl' | 'githubWebUrl' | 'publicUrl' | 'startupWarnings'>;

/** The GitHub credentials and URLs; a secret's value is never put in a problem. */
function githubSettings(pick: (flag: string, envName: string) => string | undefined, problems: string[]): GithubSettings {
  const startupWarnings: string[] = [];
  const githubToken = pick('github-token', 'EXPO_CONTROLLER_GITHUB_TOKEN') ?? null;
  if (githubToken !== null && (githubToken === '' || !/^[\x21-\x7e]+$/.test(githubToken))) problems.push('--github-token (EXPO_CONTROLLER_GITHUB_TOKEN): must be a non-empty token of printable characters without spaces');
  const githubAppId = pick('github-app-id', 'EXPO_CONTROLLER_GITHUB_APP_ID') ?? null;
  if (githubAppId !== null && !/^(?:[1-9]\d{0,15}|Iv[0-9A-Za-z.]{2,40})$/.test(githubAppId)) problems.push(`--github-app-id (EXPO_CONTROLLER_GITHUB_APP_ID): '${githubAppId.slice(0, 60)}' is not a GitHub App id (digits) or client id (Iv…)`);
  const githubPrivateKeyPath = pick('github-private-key', 'EXPO_CONTROLLER_GITHUB_PRIVATE_KEY') ?? null;
  if ((githubAppId === null) !== (githubPrivateKeyPath === null)) problems.push('--github-app-id and --github-private-key (EXPO_CONTROLLER_GITHUB_APP_ID, EXPO_CONTROLLER_GITHUB_PRIVATE_KEY): give both or neither');
  if (githubToken !== null && (githubAppId !== null || githubPrivateKeyPath !== null)) problems.push('--github-token and --github-app-id/--github-private-key: give a token or a GitHub App, not both');
  const githubPrivateKey = githubPrivateKeyPath === null ? null : readPrivateKey(githubPrivateKeyPath, problems, startupWarnings);
  const url = (flag: string, envName: string, dflt: string | null, loopbackHttpOnly: boolean): string | null => {
    const raw = pick(flag, envName);
    if (raw === undefined) return dflt;
    const problem = urlProblem(raw, loopbackHttpOnly);
    if (problem !== null) {
      problems.push(`--${flag} (${envName}): '${raw.slice(0, 200)}' ${problem}`);
      return dflt;
    }
    return raw.replace(/\/+$/, '');
  };
  const githubApiUrl = url('github-api-url', 'EXPO_CONTROLLER_GITHUB_API_URL', DEFAULT_GITHUB_API_URL, true)!;
  const defaultWeb = githubApiUrl === DEFAULT_GITHUB_API_URL ? 'https://github.com' : new URL(githubApiUrl).origin;
  const githubWebUrl = url('github-web-url', 'EXPO_CONTROLLER_GITHUB_WEB_URL', defaultWeb, true)!;
  const publicUrl = url('public-url', 'EXPO_CONTROLLER_PUBLIC_URL', null, false);
  return { githubToken, githubAppId, githubPrivateKey, githubPrivateKeyPath, githubApiUrl, githubWebUrl, publicUrl, startupWarnings };
}

/** Why `raw` is not a usable base URL, or null: http(s), no credentials, query or fragment; plain http only to a loopback host when asked. */
function urlProblem(raw: string, loopbackHttpOnly: boolean): string | null {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return 'is not a URL';
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') return 'is not an http(s) URL';
  if (u.username !== '' || u.password !== '') return 'must not carry credentials (give them with their own flag)';
  if (u.search !== '' || u.hash !== '') return 'must not have a query or fragment';
  if (loopbackHttpOnly && u.protocol === 'http:' && !['localhost', '[::1]'].includes(u.hostname) && !/^127\.\d+\.\d+\.\d+$/.test(u.hostname)) return 'must be https (http only for a loopback host)';
  return null;
}

/**
 * The App's private key: read, checked to be an RSA private key in PEM, and narrowed to 0600 when
 * others may read it. A problem names the file, never its content.
 */
function readPrivateKey(path: string, problems: string[], warnings: string[]): string | null {
  const label = `--github-private-key (EXPO_CONTROLLER_GITHUB_PRIVATE_KEY): ${path}`;
  let pem: string;
  try {
    const mode = statSync(path).mode;
    if ((mode & 0o077) !== 0) {
      try {
        chmodSync(path, 0o600);
        warnings.push(`narrowed the GitHub App key's mode: ${path}: ${(mode & 0o777).toString(8).padStart(4, '0')} → 0600`);
      } catch {
        warnings.push(`the GitHub App key ${path} is readable by others (${(mode & 0o777).toString(8).padStart(4, '0')}) and could not be narrowed to 0600`);
      }
    }
    pem = readFileSync(path, 'utf8');
  } catch (err) {
    problems.push(`${label}: cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    return null;
  }
  try {
    if (createPrivateKey(pem).asymmetricKeyType !== 'rsa') throw new Error('not RSA');
  } catch {
    // The parser's message may quote the file; say only what it is not.
    problems.push(`${label}: is not an RSA private key in PEM (GitHub App settings → Private keys → Generate)`);
    return null;
  }
  return pem;
}

/**
 * `--trust-proxy`: `true`/`false`, or a comma list of addresses and CIDR ranges (only a peer among
 * them is believed). Absent: false, so a direct client cannot claim another address with a header.
 * A hop count is refused: Fastify 5 takes one but then trusts no peer at all (a count cannot check
 * who the nearest peer is), which would silently do nothing.
 */
export function parseTrustProxy(raw: string | undefined, problems: string[]): boolean | readonly string[] {
  if (raw === undefined) return false;
  const v = raw.trim().toLowerCase();
  if (v === 'true') return true;
  if (v === 'false' || v === '') return false;
  if (!/^\d+$/.test(v)) {
    const list = v.split(',').map((s) => s.trim()).filter((s) => s !== '');
    const valid = (a: string): boolean => {
      const [ip = '', bits, extra] = a.split('/');
      const family = isIP(ip);
      if (family === 0 || extra !== undefined) return false;
      if (bits === undefined) return true;
      const n = Number(bits);
      return /^\d{1,3}$/.test(bits) && n <= (family === 4 ? 32 : 128);
    };
    if (list.length > 0 && list.every(valid)) return list;
  }
  problems.push(`--trust-proxy (EXPO_CONTROLLER_TRUST_PROXY): '${raw}' is not true, false or a comma list of the proxies' addresses/CIDRs (a hop count is not taken: name the proxy's address)`);
  return false;
}
