/**
 * Where the people's commands (`status`, `submit`, `logs`, `cancel`) find the controller: the
 * URL and the admin key, each from the first of `--url`/`--key`, `EXPO_WORKER_URL`/
 * `EXPO_WORKER_KEY`, or the client config `~/.expo-worker/client.json` (`{"url": …, "key": …}`,
 * read with `conf`; keep it mode 0600). Checked once, every problem named in one `CFG_INVALID`.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ExpoError } from '../protocol/errors.ts';
import { readConfFile } from '../sys/conf-file.ts';

export interface ClientConfig {
  /** The controller's base URL, without a trailing slash. */
  readonly url: string;
  /** The admin key. Never printed. */
  readonly key: string;
}

/** The client config file under a home directory. */
export const clientConfigPath = (home: string): string => join(home, '.expo-worker', 'client.json');

function readFile(path: string): Record<string, unknown> {
  // conf would create a missing file on read; a missing client config just means "not set here".
  if (!existsSync(path)) return {};
  try {
    return readConfFile(path);
  } catch (err) {
    throw new ExpoError('CFG_INVALID', `client config ${path} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
}

/** Resolves the URL and key: flags, then environment, then the client config file. */
export function resolveClientConfig(flags: { url?: string; key?: string }, env: NodeJS.ProcessEnv, home: string): ClientConfig {
  const path = clientConfigPath(home);
  const file = readFile(path);
  const problems: string[] = [];
  for (const k of Object.keys(file)) if (k !== 'url' && k !== 'key') problems.push(`${path}: unknown field '${k}' (only url and key)`);
  const pick = (flag: string | undefined, envName: string, field: 'url' | 'key'): { value: string | undefined; from: string } => {
    if (flag !== undefined) return { value: flag, from: `--${field}` };
    if (env[envName] !== undefined && env[envName] !== '') return { value: env[envName], from: envName };
    const v = file[field];
    if (v !== undefined && typeof v !== 'string') {
      problems.push(`${path}: ${field} must be a string`);
      return { value: undefined, from: path };
    }
    return { value: v, from: path };
  };
  const url = pick(flags.url, 'EXPO_WORKER_URL', 'url');
  const key = pick(flags.key, 'EXPO_WORKER_KEY', 'key');
  if (url.value === undefined || url.value === '') {
    problems.push(`no controller URL: give --url, set EXPO_WORKER_URL, or put "url" in ${path}`);
  } else {
    try {
      const u = new URL(url.value);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') problems.push(`${url.from}: must be an http(s) URL (got ${u.protocol})`);
    } catch {
      problems.push(`${url.from}: must be an http(s) URL (got ${JSON.stringify(url.value)})`);
    }
  }
  if (key.value === undefined || key.value === '') problems.push(`no admin key: give --key, set EXPO_WORKER_KEY, or put "key" in ${path}`);
  if (problems.length > 0) throw new ExpoError('CFG_INVALID', problems.join('\n'), { details: { problems } });
  return Object.freeze({ url: url.value!.replace(/\/+$/, ''), key: key.value! });
}
