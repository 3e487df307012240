/**
 * The part of GitHub's REST API the farm uses, as a port: the controller reads pipeline files,
 * reports commit statuses and check runs, and hands out checkout tokens through it, and tests
 * point it at a stand-in checked against GitHub's OpenAPI description.
 *
 * Credentials (one of): none (public repositories: files are read and cloned anonymously, and
 * nothing is reported), a configured token (`--github-token`: a fine-grained personal access
 * token or any token GitHub accepts as `Authorization: Bearer`), or a GitHub App
 * (`--github-app-id`, `--github-private-key`): a JWT signed with the App's key buys a
 * repository-scoped installation token per repository, good for an hour.
 *
 * Every call is retried on GitHub's transient answers (5xx, network errors) a few times with
 * backoff, and honours its rate-limit headers (`retry-after`, `x-ratelimit-remaining: 0` with
 * `x-ratelimit-reset`): a wait longer than the call's budget is not slept through but surfaces
 * as `GITHUB_UNREACHABLE` with `details.retryAfterMs`, for the caller to come back later. A
 * refusal (401, 403 not rate-limited, 404 where not expected, 422) is `GITHUB_STATUS` with
 * `details.status`. No token ever appears in an error, a log line or a URL.
 */

/** What a commit status says (GitHub's `state`). */
export type CommitState = 'pending' | 'success' | 'failure' | 'error';

export interface CommitStatus {
  state: CommitState;
  /** `expo-worker/<build name>`. */
  context: string;
  /** At most 140 characters (GitHub's limit); longer is cut with `…`. */
  description: string;
  /** The build's page, when a public URL is configured. */
  targetUrl: string | null;
}

/** A check run's state and, once completed, its conclusion (GitHub's names). */
export type CheckRunStatus = 'queued' | 'in_progress' | 'completed';
export type CheckRunConclusion = 'success' | 'failure' | 'cancelled' | 'timed_out' | 'action_required' | 'neutral' | 'skipped';

export interface CheckRunOutput {
  /** At most 255 characters. */
  title: string;
  /** Markdown, at most 65 535 characters (GitHub's limit); longer is cut, keeping the end. */
  summary: string;
  text?: string;
}

export interface NewCheckRun {
  /** `expo-worker/<build name>`. */
  name: string;
  headSha: string;
  status: CheckRunStatus;
  conclusion?: CheckRunConclusion;
  /** Our build id: `check_run.rerequested` names it back. */
  externalId: string;
  detailsUrl: string | null;
  output?: CheckRunOutput;
}

export interface CheckRunUpdate {
  status: CheckRunStatus;
  conclusion?: CheckRunConclusion;
  output?: CheckRunOutput;
  detailsUrl?: string | null;
}

/** A credential for cloning: null token when the API runs without one (anonymous clone). */
export interface CloneToken {
  token: string | null;
  /** When it stops working, ms since the epoch; null for a configured token (it does not expire on its own). */
  expiresAt: number | null;
}

export interface GithubApi {
  /** How the API authenticates: `none`, `token` (statuses) or `app` (check runs). */
  readonly mode: 'none' | 'token' | 'app';
  /**
   * A file's text at a commit (`GET /repos/{owner}/{repo}/contents/{path}?ref={sha}`, raw), or
   * null when the file or the commit does not exist there (404). Files over `maxBytes` are
   * refused unread (`GITHUB_STATUS`, `details.tooLarge: true`).
   */
  getFile(repo: string, path: string, ref: string, maxBytes: number): Promise<string | null>;
  /** `POST /repos/{owner}/{repo}/statuses/{sha}`. */
  createStatus(repo: string, sha: string, status: CommitStatus): Promise<void>;
  /** `POST /repos/{owner}/{repo}/check-runs`: the new run's id. App mode only. */
  createCheckRun(repo: string, run: NewCheckRun): Promise<number>;
  /** `PATCH /repos/{owner}/{repo}/check-runs/{id}`. App mode only. */
  updateCheckRun(repo: string, id: number, update: CheckRunUpdate): Promise<void>;
  /**
   * A token that can clone `repo` and nothing more than GitHub lets it: in App mode a fresh
   * installation token for this one repository with `contents: read` only; with a configured
   * token, that token; without credentials, `{token: null}`.
   */
  cloneToken(repo: string): Promise<CloneToken>;
}
