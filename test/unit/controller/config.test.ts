/** The controller's settings: the GitHub webhook secret, API credentials (token or App) and URLs, and --trust-proxy. */
import { generateKeyPairSync } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CONTROLLER_HELP, parseControllerArgs } from '../../../src/controller/config.ts';
import { createLogger } from '../../../src/sys/logger.ts';

const BASE = ['--db', '/tmp/x.db', '--api-key', 'admin-key-0123456789'];
const config = (argv: string[], env: NodeJS.ProcessEnv = {}) => {
  const parsed = parseControllerArgs([...BASE, ...argv], env);
  if (parsed.help) throw new Error('help');
  return parsed.config;
};

describe('--github-secret', () => {
  it('is unset by default', () => {
    expect(config([]).githubSecret).toBeNull();
  });

  it('comes from the flag, else from EXPO_CONTROLLER_GITHUB_SECRET', () => {
    expect(config([], { EXPO_CONTROLLER_GITHUB_SECRET: 'env-secret-0123456789' }).githubSecret).toBe('env-secret-0123456789');
    expect(config(['--github-secret', 'flag-secret-0123456789'], { EXPO_CONTROLLER_GITHUB_SECRET: 'env-secret-0123456789' }).githubSecret).toBe('flag-secret-0123456789');
  });

  it('refuses one shorter than 16 characters without echoing it', () => {
    let err: unknown;
    try {
      config(['--github-secret', 'short-s3cret']);
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ code: 'CFG_INVALID', message: expect.stringContaining('--github-secret (EXPO_CONTROLLER_GITHUB_SECRET): must be at least 16 characters') as string });
    expect((err as Error).message).not.toContain('short-s3cret');
    expect(() => config([], { EXPO_CONTROLLER_GITHUB_SECRET: '' })).toThrow(/--github-secret/);
  });

  it('is in the help', () => {
    expect(CONTROLLER_HELP).toMatch(/--github-secret SECRET +the secret of the GitHub webhook/);
    expect(CONTROLLER_HELP).toContain('EXPO_CONTROLLER_GITHUB_SECRET');
  });
});

const dir = mkdtempSync(join(tmpdir(), 'expo-config-github-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const rsaPem = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
const keyFile = (name: string, content: string, mode = 0o600): string => {
  const path = join(dir, name);
  writeFileSync(path, content, { mode });
  chmodSync(path, mode);
  return path;
};
const problemsOf = (argv: string[], env: NodeJS.ProcessEnv = {}): string => {
  try {
    config(argv, env);
  } catch (err) {
    expect(err).toMatchObject({ code: 'CFG_INVALID' });
    return (err as Error).message;
  }
  throw new Error('expected CFG_INVALID');
};

describe('GitHub API credentials', () => {
  it('default to none, with github.com URLs and no public URL', () => {
    expect(config([])).toMatchObject({ githubToken: null, githubAppId: null, githubPrivateKey: null, githubApiUrl: 'https://api.github.com', githubWebUrl: 'https://github.com', publicUrl: null, startupWarnings: [] });
  });

  it('take a token from the flag or EXPO_CONTROLLER_GITHUB_TOKEN, refusing a bad one without echoing it', () => {
    expect(config([], { EXPO_CONTROLLER_GITHUB_TOKEN: 'ghp_envToken123' }).githubToken).toBe('ghp_envToken123');
    expect(config(['--github-token', 'ghp_flagToken123'], { EXPO_CONTROLLER_GITHUB_TOKEN: 'ghp_envToken123' }).githubToken).toBe('ghp_flagToken123');
    const message = problemsOf(['--github-token', 'ghp_has space']);
    expect(message).toContain('--github-token (EXPO_CONTROLLER_GITHUB_TOKEN)');
    expect(message).not.toContain('ghp_has');
  });

  it('read and check the App key at start', () => {
    const path = keyFile('app.pem', rsaPem);
    const c = config(['--github-app-id', '12345', '--github-private-key', path]);
    expect(c).toMatchObject({ githubAppId: '12345', githubPrivateKey: rsaPem, githubPrivateKeyPath: path });
    expect(config([], { EXPO_CONTROLLER_GITHUB_APP_ID: 'Iv23liAbCdEf', EXPO_CONTROLLER_GITHUB_PRIVATE_KEY: path }).githubAppId).toBe('Iv23liAbCdEf');
    // GitHub hands out PKCS#1 (`BEGIN RSA PRIVATE KEY`).
    const pkcs1 = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
    expect(config(['--github-app-id', '7', '--github-private-key', keyFile('github.pem', pkcs1)]).githubPrivateKey).toBe(pkcs1);
  });

  it('refuse a key that is not an RSA private key, naming the file and never quoting it', () => {
    const bad = keyFile('bad.pem', '-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END PRIVATE KEY-----\n');
    const message = problemsOf(['--github-app-id', '1', '--github-private-key', bad]);
    expect(message).toContain(`--github-private-key (EXPO_CONTROLLER_GITHUB_PRIVATE_KEY): ${bad}: is not an RSA private key in PEM`);
    expect(message).not.toContain('c2VjcmV0');
    const ec = keyFile('ec.pem', generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
    expect(problemsOf(['--github-app-id', '1', '--github-private-key', ec])).toContain('is not an RSA private key');
    expect(problemsOf(['--github-app-id', '1', '--github-private-key', join(dir, 'missing.pem')])).toContain('cannot be read (ENOENT)');
  });

  it('narrow a key file others can read to 0600, and say so', () => {
    const path = keyFile('wide.pem', rsaPem, 0o644);
    const c = config(['--github-app-id', '1', '--github-private-key', path]);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(c.startupWarnings).toEqual([`narrowed the GitHub App key's mode: ${path}: 0644 → 0600`]);
  });

  it('want the App id and key together, and a token or an App, not both', () => {
    const path = keyFile('pair.pem', rsaPem);
    expect(problemsOf(['--github-app-id', '1'])).toContain('give both or neither');
    expect(problemsOf(['--github-private-key', path])).toContain('give both or neither');
    expect(problemsOf(['--github-token', 'ghp_x', '--github-app-id', '1', '--github-private-key', path])).toContain('a token or a GitHub App, not both');
    expect(problemsOf(['--github-app-id', 'my app', '--github-private-key', path])).toContain('is not a GitHub App id');
  });

  it('never log the token or the key', () => {
    const path = keyFile('log.pem', rsaPem);
    const lines: string[] = [];
    const log = createLogger('t', 'info', { write: (l: string) => void lines.push(l) });
    log.info({ config: config(['--github-app-id', '1', '--github-private-key', path]) }, 'config');
    log.info({ config: config(['--github-token', 'ghp_neverLogged123']) }, 'config');
    expect(lines.join('')).not.toContain('ghp_neverLogged123');
    expect(lines.join('')).not.toContain('PRIVATE KEY');
  });
});

describe('GitHub and public URLs', () => {
  it('serve GitHub Enterprise from the API URL origin unless the web URL is given', () => {
    expect(config(['--github-api-url', 'https://ghe.example.com/api/v3/'])).toMatchObject({ githubApiUrl: 'https://ghe.example.com/api/v3', githubWebUrl: 'https://ghe.example.com' });
    expect(config([], { EXPO_CONTROLLER_GITHUB_API_URL: 'https://ghe.example.com/api/v3', EXPO_CONTROLLER_GITHUB_WEB_URL: 'https://git.example.com' }).githubWebUrl).toBe('https://git.example.com');
    expect(config(['--public-url', 'https://ci.example.com/'], {}).publicUrl).toBe('https://ci.example.com');
  });

  it('allow plain http only to a loopback host, and refuse credentials in a URL', () => {
    expect(config(['--github-api-url', 'http://127.0.0.1:8080']).githubApiUrl).toBe('http://127.0.0.1:8080');
    expect(config(['--github-api-url', 'http://localhost:8080']).githubWebUrl).toBe('http://localhost:8080');
    expect(problemsOf(['--github-api-url', 'http://ghe.example.com/api/v3'])).toContain('must be https (http only for a loopback host)');
    expect(problemsOf(['--github-web-url', 'https://user:pw@github.com'])).toContain('must not carry credentials');
    expect(problemsOf(['--public-url', 'ftp://ci'])).toContain('is not an http(s) URL');
    expect(config(['--public-url', 'http://ci.lan:3000']).publicUrl).toBe('http://ci.lan:3000');
  });

  it('are all in the help', () => {
    for (const flag of ['--github-token TOKEN', '--github-app-id ID', '--github-private-key PATH', '--github-api-url URL', '--github-web-url URL', '--public-url URL']) expect(CONTROLLER_HELP).toContain(flag);
    for (const env of ['TOKEN', 'APP_ID', 'PRIVATE_KEY', 'API_URL', 'WEB_URL']) expect(CONTROLLER_HELP).toContain(`EXPO_CONTROLLER_GITHUB_${env}`);
    expect(CONTROLLER_HELP).toContain('EXPO_CONTROLLER_PUBLIC_URL');
  });
});

describe('--trust-proxy', () => {
  it('is false by default, and takes true, false or a comma list of addresses and CIDRs from the flag or EXPO_CONTROLLER_TRUST_PROXY', () => {
    expect(config([]).trustProxy).toBe(false);
    expect(config(['--trust-proxy', 'true']).trustProxy).toBe(true);
    expect(config(['--trust-proxy', 'FALSE']).trustProxy).toBe(false);
    expect(config(['--trust-proxy', '127.0.0.1, 10.0.0.0/8,::1,fd00::/8']).trustProxy).toEqual(['127.0.0.1', '10.0.0.0/8', '::1', 'fd00::/8']);
    expect(config([], { EXPO_CONTROLLER_TRUST_PROXY: '192.168.1.2' }).trustProxy).toEqual(['192.168.1.2']);
  });

  it('refuses a hop count (Fastify would then trust no peer) and anything not an address, naming the value', () => {
    expect(problemsOf(['--trust-proxy', '1'])).toContain("--trust-proxy (EXPO_CONTROLLER_TRUST_PROXY): '1' is not true, false or a comma list");
    expect(problemsOf(['--trust-proxy', 'proxy.lan'])).toContain("'proxy.lan' is not");
    expect(problemsOf(['--trust-proxy', '10.0.0.0/33'])).toContain("'10.0.0.0/33' is not");
    expect(problemsOf(['--trust-proxy', '10.0.0.1/8/1'])).toContain('is not');
  });

  it('is in the help, with --public-url saying sign-in behind HTTPS needs it', () => {
    expect(CONTROLLER_HELP).toContain('--trust-proxy WHICH');
    expect(CONTROLLER_HELP).toContain('EXPO_CONTROLLER_TRUST_PROXY');
    expect(CONTROLLER_HELP).toMatch(/--public-url URL[^]*behind HTTPS needed to sign in/);
  });
});
