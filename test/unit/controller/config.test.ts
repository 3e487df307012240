/** The controller's `--github-secret` / `EXPO_CONTROLLER_GITHUB_SECRET`. */
import { describe, expect, it } from 'vitest';
import { CONTROLLER_HELP, parseControllerArgs } from '../../../src/controller/config.ts';

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
