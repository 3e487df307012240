/**
 * What a delivery asks to build, read from GitHub's own example payloads
 * (`@octokit/webhooks-examples`), and refused when a body does not fit its event.
 */
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { cloneUrlProblem, pipelineEventOf, workOf } from '../../../src/github/delivery-work.ts';

interface Definition {
  name: string;
  examples: Record<string, unknown>[];
}
const EXAMPLES = createRequire(import.meta.url)('@octokit/webhooks-examples') as Definition[];
const examples = (name: string): Record<string, unknown>[] => structuredClone(EXAMPLES.find((d) => d.name === name)!.examples);
const first = (name: string, pick: (e: Record<string, unknown>) => boolean): Record<string, unknown> => examples(name).find(pick)!;

const SHA = 'a'.repeat(40);
const workIn = (r: ReturnType<typeof workOf>) => {
  if ('ignore' in r) throw new Error(`ignored: ${r.ignore}`);
  return r.work;
};
const ignoreOf = (r: ReturnType<typeof workOf>): string => ('ignore' in r ? r.ignore : `built: ${JSON.stringify(r.work)}`);

describe('workOf', () => {
  it('reads a branch push: repo, clone URL, full ref and the pushed commit', () => {
    const p = first('push', (e) => e.ref === 'refs/heads/master' && e.deleted === false);
    const r = workOf('push', p);
    expect('work' in r && r.work).toMatchObject({ event: 'push', repo: 'Codertocat/Hello-World', ref: 'refs/heads/master', sha: p.after, cloneUrl: (p.repository as { clone_url: string }).clone_url });
    expect(pipelineEventOf(workIn(r))).toEqual({ kind: 'push', branch: 'master' });
  });

  it('reads a tag push as a tag event', () => {
    const p = first('push', (e) => e.ref === 'refs/tags/simple-tag' && e.deleted === false);
    const r = workOf('push', p);
    expect(pipelineEventOf(workIn(r))).toEqual({ kind: 'tag', tag: 'simple-tag' });
  });

  it('builds nothing for a deleted branch or tag', () => {
    const p = first('push', (e) => e.deleted === true);
    expect(ignoreOf(workOf('push', p))).toMatch(/was deleted/);
  });

  it('reads an opened, reopened or synchronized pull request: its head commit, its pull ref and its base branch', () => {
    for (const action of ['opened', 'reopened', 'synchronize']) {
      const p = first('pull_request', (e) => e.action === action);
      const pr = p.pull_request as { head: { sha: string }; base: { ref: string } };
      const r = workOf('pull_request', p);
      expect('work' in r && r.work, action).toMatchObject({ event: 'pull_request', sha: pr.head.sha, ref: `refs/pull/${String(p.number)}/head`, prNumber: p.number, baseBranch: pr.base.ref });
      expect(pipelineEventOf(workIn(r))).toEqual({ kind: 'pull_request', baseBranch: pr.base.ref });
    }
  });

  it('builds nothing for the other pull request actions', () => {
    for (const p of examples('pull_request').filter((e) => !['opened', 'reopened', 'synchronize'].includes(e.action as string))) {
      expect(ignoreOf(workOf('pull_request', p))).toMatch(/builds nothing/);
    }
  });

  it('does not build a pull request from a fork (it would run with the project secrets)', () => {
    const p = first('pull_request', (e) => e.action === 'opened');
    (p.pull_request as { head: { repo: { full_name: string } } }).head.repo.full_name = 'mallory/Hello-World';
    expect(ignoreOf(workOf('pull_request', p))).toMatch(/fork mallory\/Hello-World/);
  });

  it('reads check_run.rerequested as a rerun of the build its external id names, and nothing else of check_run', () => {
    const p = first('check_run', (e) => e.action === 'rerequested');
    expect(ignoreOf(workOf('check_run', p))).toMatch(/external_id .* is not one of our builds/);
    (p.check_run as { external_id: string }).external_id = 'abcdefghijklmnop';
    const r = workOf('check_run', p);
    expect('work' in r && r.work).toMatchObject({ event: 'check_run', rerunOf: 'abcdefghijklmnop', sha: (p.check_run as { head_sha: string }).head_sha });
    expect(ignoreOf(workOf('check_run', first('check_run', (e) => e.action === 'completed')))).toMatch(/builds nothing/);
  });

  it('builds nothing for other events, and says which', () => {
    expect(ignoreOf(workOf('issues', { repository: {} }))).toBe('the issues event builds nothing');
  });

  it('refuses a body that does not fit its event: a push body sent as a pull request, a pull request body as a push', () => {
    const push = first('push', (e) => e.ref === 'refs/heads/master');
    expect(ignoreOf(workOf('pull_request', push))).toMatch(/^pull_request:/);
    const pr = first('pull_request', (e) => e.action === 'opened');
    expect(ignoreOf(workOf('push', pr))).toMatch(/^push: ref/);
    expect(ignoreOf(workOf('check_run', push))).toMatch(/^check_run:/);
  });

  it('refuses hostile values before they go anywhere: a ref with a space, a short sha, a repository that is not owner/name, a clone URL with credentials', () => {
    const base = () => first('push', (e) => e.ref === 'refs/heads/master' && e.deleted === false);
    const withRef = base();
    withRef.ref = 'refs/heads/x $(touch /tmp/pwned)';
    expect(ignoreOf(workOf('push', withRef))).toMatch(/is not a branch or tag/);
    const withSha = base();
    withSha.after = 'abc';
    expect(ignoreOf(workOf('push', withSha))).toMatch(/is not a commit id/);
    const withRepo = base();
    (withRepo.repository as { full_name: string }).full_name = '../../etc';
    expect(ignoreOf(workOf('push', withRepo))).toMatch(/is not owner\/name/);
    const withUrl = base();
    (withUrl.repository as { clone_url: string }).clone_url = 'https://user:pw@github.com/a/b.git';
    expect(ignoreOf(workOf('push', withUrl))).toBe('the clone URL carries credentials');
    expect(ignoreOf(workOf('push', 'not an object'))).toBe('the payload is not an object');
  });

  it('keeps a branch name with shell metacharacters that git allows as it is (it is only compared, never run)', () => {
    const p = first('push', (e) => e.ref === 'refs/heads/master' && e.deleted === false);
    p.ref = 'refs/heads/fix;rm$(id)`x`|&';
    p.after = SHA;
    const r = workOf('push', p);
    expect('work' in r && r.work.ref).toBe('refs/heads/fix;rm$(id)`x`|&');
  });

  it('shows a hostile value short and on one line in its reason', () => {
    const p = first('push', (e) => e.ref === 'refs/heads/master');
    p.ref = `refs/heads/${'x'.repeat(500)}\n\u001b[31mred`;
    const reason = ignoreOf(workOf('push', p));
    expect(reason.length).toBeLessThan(160);
    expect(reason.includes('\n') || reason.includes('\u001b')).toBe(false);
  });
});

describe('cloneUrlProblem', () => {
  it('accepts GitHub clone URLs and refuses others', () => {
    expect(cloneUrlProblem('https://github.com/octo/app.git')).toBeNull();
    expect(cloneUrlProblem('http://127.0.0.1:8080/octo/app.git')).toBeNull();
    expect(cloneUrlProblem('git@github.com:octo/app.git')).toMatch(/not a URL|not http/);
    expect(cloneUrlProblem('file:///etc/passwd.git')).toMatch(/not http/);
    expect(cloneUrlProblem('https://github.com/octo/app.git?x=1')).toMatch(/query/);
    expect(cloneUrlProblem('https://github.com/octo/app')).toMatch(/not a repository URL/);
  });
});
