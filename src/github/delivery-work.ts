/**
 * What a verified webhook delivery asks the farm to build, read from its payload: a branch or
 * tag push, a pull request opened or updated, or a check run GitHub asks to run again — or why
 * it asks for nothing. Pure: no I/O.
 *
 * GitHub signs the body, not the `X-GitHub-Event` header, so whoever holds one signed body can
 * send it again as another event. Every field read here is therefore checked to be the shape
 * that event's payload has (GitHub's webhook reference); a body that does not fit its event
 * builds nothing and says why. Names and ids are checked against the patterns the rest of the
 * system uses before they go further (the store, a log line, an argv element in the VM).
 */
import { BUILD_ID_PATTERN, GIT_REF_PATTERN, REPO_PATTERN, SHA_PATTERN } from '../protocol/domain.ts';

/** A delivery's work, as the store keeps it until the delivery is settled. */
export interface DeliveryWork {
  event: 'push' | 'pull_request' | 'check_run';
  /** `owner/name` as the payload spells it. */
  repo: string;
  cloneUrl: string;
  /** The full ref: `refs/heads/x`, `refs/tags/x`, or `refs/pull/<n>/head` ('' for a rerun). */
  ref: string;
  sha: string;
  prNumber: number | null;
  /** A pull request's base branch (its `on.pull_request.branches` filter reads it). */
  baseBranch: string | null;
  /** The GitHub App installation the delivery came through, when it did. */
  installationId: number | null;
  /** check_run.rerequested: the external id of the check run GitHub asks to run again (our build id). */
  rerunOf: string | null;
  /** What the push moved the ref from (a push's or a pull request synchronize's `before`); null or absent when none. */
  before?: string | null;
}

export type WorkOf = { work: DeliveryWork } | { ignore: string };

/** Pull request actions that put new code in front of the farm. */
const PR_ACTIONS = ['opened', 'synchronize', 'reopened'];
const ZERO_SHA = '0'.repeat(40);
const REF = new RegExp(GIT_REF_PATTERN);

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (o: Obj, key: string): string | null => (typeof o[key] === 'string' ? (o[key] as string) : null);
const matches = (v: string | null, pattern: string | RegExp): v is string => v !== null && (typeof pattern === 'string' ? new RegExp(pattern) : pattern).test(v);

/** Words for a value that may be anything a sender chose: short, one line, no control characters. */
const shown = (v: unknown): string => {
  const s = typeof v === 'string' ? v : JSON.stringify(v) ?? String(v);
  // eslint-disable-next-line no-control-regex
  const clean = s.replace(/[\u0000-\u001f\u007f]/g, '?');
  return clean.length > 64 ? `${clean.slice(0, 64)}…` : clean;
};

/**
 * The clone URL GitHub gives (`repository.clone_url`): http(s), no credentials, no query or
 * fragment, a path ending in `.git`. Whether its host is the configured GitHub is the caller's
 * check (it knows the configuration).
 */
export function cloneUrlProblem(url: string): string | null {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return `the clone URL '${shown(url)}' is not a URL`;
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') return `the clone URL '${shown(url)}' is not http(s)`;
  if (u.username !== '' || u.password !== '') return 'the clone URL carries credentials';
  if (u.search !== '' || u.hash !== '') return `the clone URL '${shown(url)}' has a query or fragment`;
  if (!u.pathname.endsWith('.git') || url.length > 512) return `the clone URL '${shown(url)}' is not a repository URL`;
  return null;
}

/** The repository part every event has: `repository.full_name` and `clone_url`, and the App installation. */
function repositoryOf(payload: Obj): { repo: string; cloneUrl: string; installationId: number | null } | { ignore: string } {
  const repository = payload.repository;
  if (!isObj(repository)) return { ignore: 'the payload has no repository' };
  const repo = str(repository, 'full_name');
  if (!matches(repo, REPO_PATTERN)) return { ignore: `repository.full_name '${shown(repository.full_name)}' is not owner/name` };
  const cloneUrl = str(repository, 'clone_url');
  if (cloneUrl === null) return { ignore: 'the payload has no repository.clone_url' };
  const problem = cloneUrlProblem(cloneUrl);
  if (problem !== null) return { ignore: problem };
  const inst = isObj(payload.installation) ? payload.installation.id : undefined;
  const installationId = typeof inst === 'number' && Number.isSafeInteger(inst) && inst > 0 ? inst : null;
  return { repo, cloneUrl, installationId };
}

/** A payload's `before`: the commit the ref pointed at, or null (none: a new ref; or not a commit id). */
function beforeOf(payload: Obj): string | null {
  const before = str(payload, 'before');
  return matches(before, SHA_PATTERN) && before !== ZERO_SHA ? before : null;
}

/** What the delivery of `event` with `payload` asks to build, or why nothing. */
export function workOf(event: string, payload: unknown): WorkOf {
  if (!isObj(payload)) return { ignore: 'the payload is not an object' };
  if (event !== 'push' && event !== 'pull_request' && event !== 'check_run') return { ignore: `the ${shown(event)} event builds nothing` };
  const r = repositoryOf(payload);
  if ('ignore' in r) return r;
  const base = { repo: r.repo, cloneUrl: r.cloneUrl, installationId: r.installationId, prNumber: null, baseBranch: null, rerunOf: null };
  switch (event) {
    case 'push': {
      const ref = str(payload, 'ref');
      const after = str(payload, 'after');
      if (!matches(ref, REF) || !(ref.startsWith('refs/heads/') || ref.startsWith('refs/tags/'))) return { ignore: `push: ref '${shown(payload.ref)}' is not a branch or tag` };
      if (payload.deleted === true || after === ZERO_SHA) return { ignore: `push: ${ref} was deleted` };
      if (!matches(after, SHA_PATTERN)) return { ignore: `push: after '${shown(payload.after)}' is not a commit id` };
      return { work: { ...base, event, ref, sha: after, before: beforeOf(payload) } };
    }
    case 'pull_request': {
      const action = str(payload, 'action');
      if (action === null || !PR_ACTIONS.includes(action)) return { ignore: `pull_request: the action '${shown(payload.action)}' builds nothing (${PR_ACTIONS.join(', ')} do)` };
      const number = payload.number;
      const pr = payload.pull_request;
      if (typeof number !== 'number' || !Number.isSafeInteger(number) || number < 1 || !isObj(pr)) return { ignore: 'pull_request: the payload has no pull request' };
      const head = pr.head;
      const baseRef = isObj(pr.base) ? str(pr.base, 'ref') : null;
      if (!isObj(head) || !matches(str(head, 'sha'), SHA_PATTERN)) return { ignore: 'pull_request: pull_request.head.sha is not a commit id' };
      if (baseRef === null || !REF.test(`refs/heads/${baseRef}`)) return { ignore: `pull_request: the base branch '${shown(baseRef)}' is not a branch name` };
      // A pull request from a fork runs someone else's code: it would get the project's secrets.
      const headRepo = isObj(head.repo) ? str(head.repo, 'full_name') : null;
      if (headRepo === null || headRepo.toLowerCase() !== r.repo.toLowerCase()) {
        return { ignore: `pull_request #${number}: from ${headRepo === null ? 'a deleted fork' : `the fork ${shown(headRepo)}`}; pull requests from forks are not built (they would run with the project's secrets)` };
      }
      return { work: { ...base, event, ref: `refs/pull/${number}/head`, sha: str(head, 'sha')!, prNumber: number, baseBranch: baseRef, before: action === 'synchronize' ? beforeOf(payload) : null } };
    }
    case 'check_run': {
      const action = str(payload, 'action');
      if (action !== 'rerequested') return { ignore: `check_run: the action '${shown(payload.action)}' builds nothing (rerequested does)` };
      const run = payload.check_run;
      if (!isObj(run)) return { ignore: 'check_run: the payload has no check run' };
      const externalId = str(run, 'external_id');
      if (!matches(externalId, BUILD_ID_PATTERN)) return { ignore: `check_run: external_id '${shown(run.external_id)}' is not one of our builds` };
      const sha = str(run, 'head_sha');
      if (!matches(sha, SHA_PATTERN)) return { ignore: 'check_run: check_run.head_sha is not a commit id' };
      return { work: { ...base, event, ref: '', sha, rerunOf: externalId } };
    }
  }
}

/** The pipeline event a push or pull request is (`triggers` selects builds with it). */
export function pipelineEventOf(work: DeliveryWork): { kind: 'push'; branch: string } | { kind: 'tag'; tag: string } | { kind: 'pull_request'; baseBranch: string } | null {
  if (work.event === 'pull_request' && work.baseBranch !== null) return { kind: 'pull_request', baseBranch: work.baseBranch };
  if (work.event !== 'push') return null;
  if (work.ref.startsWith('refs/heads/')) return { kind: 'push', branch: work.ref.slice('refs/heads/'.length) };
  if (work.ref.startsWith('refs/tags/')) return { kind: 'tag', tag: work.ref.slice('refs/tags/'.length) };
  return null;
}
