/**
 * The pino logger both processes use, with every secret the system handles redacted wherever it
 * appears in a logged object: keys, build tokens, leases, build env and secret env,
 * Authorization headers, the GitHub webhook secret, token and App private key, users' passwords,
 * API token secrets, session cookies and CSRF tokens.
 *
 * Format: one JSON object a line (for log shippers and `jq`), or pino-pretty's readable lines
 * for a person at a terminal. `auto` (the default) is pretty when stdout is a TTY and JSON
 * otherwise; `--log-format json` forces JSON even on a terminal. Redaction happens before
 * either, so both are free of secrets.
 */
import pino, { type DestinationStream, type Logger } from 'pino';

export const REDACT_PATHS = [
  'req.headers.authorization',
  'headers.authorization',
  'authorization',
  'apiKey',
  '*.apiKey',
  'buildToken',
  '*.buildToken',
  'lease',
  '*.lease',
  'env',
  '*.env',
  'secretEnv',
  '*.secretEnv',
  'build.secretEnv',
  'claim.build.secretEnv',
  'privateKey',
  '*.privateKey',
  'githubSecret',
  '*.githubSecret',
  'githubToken',
  '*.githubToken',
  'githubPrivateKey',
  '*.githubPrivateKey',
  // Access (docs/access.md): users' passwords, API token secrets, session cookies and CSRF tokens.
  'password',
  '*.password',
  'secret',
  '*.secret',
  'cookieValue',
  '*.cookieValue',
  'csrfToken',
  '*.csrfToken',
  'req.headers.cookie',
  'headers.cookie',
  'cookie',
  'res.headers["set-cookie"]',
  'headers["set-cookie"]',
];

export function createLogger(service: string, level: string, destination?: DestinationStream): Logger {
  return pino({ level, redact: { paths: REDACT_PATHS, censor: '[redacted]' }, base: { service } }, destination);
}

export const LOG_FORMATS = ['auto', 'json', 'pretty'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** What `auto` means here: pretty on a terminal, JSON when stdout is a pipe, a file or a service's log. */
export function resolveLogFormat(format: LogFormat, stdoutIsTty: boolean): 'json' | 'pretty' {
  if (format === 'auto') return stdoutIsTty ? 'pretty' : 'json';
  return format;
}

/**
 * Where the logger writes for a format: undefined (pino's own stdout, JSON) or a pino-pretty
 * stream onto `out` (stdout by default). pino-pretty is loaded only when asked for. It runs in
 * this thread, synchronously, so a line is out before the process exits.
 */
export async function logDestination(format: 'json' | 'pretty', out?: NodeJS.WritableStream): Promise<DestinationStream | undefined> {
  if (format === 'json') return out as DestinationStream | undefined;
  const { default: pretty } = await import('pino-pretty');
  return pretty({ destination: out ?? 1, sync: true, colorize: out === undefined ? process.stdout.isTTY === true : false, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' });
}
