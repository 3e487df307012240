/**
 * Checking a GitHub build's commit out into its work directory, before the first step.
 *
 * The agent asks the controller for a short-lived clone token (`POST /api/v1/builds/:id/
 * checkout-token`, retried like every call), uploads it over SFTP into a 0600 file of the
 * workspace, and runs {@link CHECKOUT_SCRIPT} in the VM. The script reads the file and deletes it
 * before git runs, then hands the credential to git as environment config (`GIT_CONFIG_COUNT`,
 * `http.<origin>/.extraheader`) scoped to the clone URL's origin — so it is never in argv, the
 * URL, `.git/config`, the log or a file that outlives the checkout, and a submodule on another
 * host never sees it. The steps run later in their own SSH commands: they inherit none of it.
 * The token is added to the log's masked values anyway, raw and in its Basic form.
 *
 * The script: `git init`, remote `origin` = the URL, fetch exactly the commit (`--depth=1`; when
 * the server refuses a commit id, the ref instead, whole), `checkout --detach`, check that HEAD
 * is the commit, then submodules (`--depth=1`, recursive when asked) and LFS (`git lfs pull`;
 * refused with a clear message when `git lfs` is not installed in the VM).
 *
 * What a failure is: a token the controller could not give (GitHub unreachable, the controller
 * gone for longer than the retries), or a git fetch that failed on the server's or the network's
 * side (5xx, connection refused or reset, DNS, timeouts — {@link TRANSIENT}) is an
 * infrastructure failure (`worker_lost`, so the build is retried within its `maxAttempts`);
 * anything else git refused — a missing commit, a refused credential, a bad ref — fails the
 * build (`build_failed`): retrying cannot find a commit that is not there. The message says
 * what git said either way.
 */
import { Value } from 'typebox/value';
import { SHA_PATTERN } from '../protocol/domain.ts';
import { GitRef, type AssignedBuild, type CompleteBody } from '../protocol/schemas.ts';
import { shellQuote } from '../sys/ssh.ts';
import { isAttemptOver, type RetryOptions } from './controller-client.ts';

export type CheckoutSpec = NonNullable<AssignedBuild['checkout']>;

/** Where the checkout script lives in the workspace, and the credential file it reads and deletes. */
export const CHECKOUT_SCRIPT_FILE = 'checkout.sh';
export const CHECKOUT_CREDENTIAL_FILE = 'checkout-credential';

/**
 * usage: checkout.sh DIR URL ORIGIN SHA REF SUBMODULES LFS — checks SHA out into DIR/work.
 * Never `set -x`: the credential is in this process's environment.
 */
export const CHECKOUT_SCRIPT = `#!/bin/bash
# Written by expo-worker: checks a commit out into the build's work directory.
set -u
set +x
dir=$1 url=$2 origin=$3 sha=$4 ref=$5 submodules=$6 lfs=$7
cred=
if [ -f "$dir/${CHECKOUT_CREDENTIAL_FILE}" ]; then
  IFS= read -r cred <"$dir/${CHECKOUT_CREDENTIAL_FILE}" || true
  rm -f "$dir/${CHECKOUT_CREDENTIAL_FILE}"
fi
export GIT_TERMINAL_PROMPT=0 GCM_INTERACTIVE=never
unset GIT_ASKPASS SSH_ASKPASS
if [ -n "$cred" ]; then
  export GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0="http.$origin/.extraheader" GIT_CONFIG_VALUE_0="Authorization: Basic $cred"
fi
unset cred
# LFS files come in one batch after the checkout (git lfs pull), never through the smudge filter.
export GIT_LFS_SKIP_SMUDGE=1
cd "$dir/work" || exit 90
run() { printf '$ git %s\\n' "$*"; git "$@"; }
run init -q . || exit 1
git remote remove origin >/dev/null 2>&1
run remote add origin "$url" || exit 1
if ! run fetch --no-tags --progress --depth=1 origin "$sha"; then
  echo "the server refused the commit id; fetching $ref instead"
  run fetch --no-tags --progress origin "+$ref:refs/remotes/origin/expo-checkout" || exit 1
fi
run -c advice.detachedHead=false checkout --detach "$sha" || exit 1
head=$(git rev-parse HEAD) || exit 1
if [ "$head" != "$sha" ]; then echo "HEAD is $head, not $sha"; exit 1; fi
case "$submodules" in
  true) run submodule update --init --depth=1 || exit 1 ;;
  recursive) run submodule update --init --recursive --depth=1 || exit 1 ;;
esac
if [ "$lfs" = true ]; then
  if ! git lfs version >/dev/null 2>&1; then
    echo "git lfs is not installed in the VM: install it in the image (brew install git-lfs) or set checkout.lfs to false"
    exit 1
  fi
  run lfs install --local || exit 1
  run lfs pull || exit 1
fi
echo "checked out $sha"
`;

const SHA = new RegExp(SHA_PATTERN);
/**
 * What is wrong with a checkout before anything runs: the clone URL (see {@link cloneOrigin}),
 * a commit that is not 40 hex digits, a ref that is not a full ref — the script passes each to
 * git as one argument, and none may read as an option. Null when nothing is.
 */
export function checkoutProblem(spec: CheckoutSpec): string | null {
  const where = cloneOrigin(spec.url);
  if ('problem' in where) return where.problem;
  if (!SHA.test(spec.sha)) return 'the commit is not 40 hex digits';
  // A full ref as `GitRef` allows: never an option, never a second refspec.
  if (!Value.Check(GitRef, spec.ref)) return 'the ref is not a full git ref (refs/…)';
  return null;
}

/** The clone URL's origin (`https://github.com`), or a reason it cannot be cloned from. */
export function cloneOrigin(url: string): { origin: string } | { problem: string } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return { problem: 'the clone URL is not a URL' };
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') return { problem: `the clone URL's scheme ${u.protocol} is not http(s)` };
  if (u.username !== '' || u.password !== '') return { problem: 'the clone URL holds credentials' };
  return { origin: u.origin };
}

/** The URL as it may be shown: credentials and query removed. */
export function shownUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}`;
  } catch {
    return '(not a URL)';
  }
}

/** What git gets as the Basic credential (GitHub's user for tokens is `x-access-token`). */
export const basicCredential = (token: string): string => Buffer.from(`x-access-token:${token}`).toString('base64');

/** The command that runs the checkout script in workspace `abs` (a `"$HOME"/…` path). */
export function checkoutCommand(abs: string, spec: CheckoutSpec, origin: string): string {
  return `/bin/bash ${abs}/${CHECKOUT_SCRIPT_FILE} ${abs} ${shellQuote([spec.url, origin, spec.sha, spec.ref, String(spec.submodules), String(spec.lfs)])}`;
}

/** What the checkout asks of the controller (ControllerClient fits). */
export interface CheckoutClient {
  checkoutToken(buildId: string, lease: string, r?: RetryOptions): Promise<{ token: string | null; expiresAt: string | null }>;
}

/** What it asks of the workspace (RemoteWorkspace fits). */
export interface CheckoutWorkspace {
  /** Runs the checkout in the VM, the credential (Basic, base64) passed through a 0600 file; the exit status, or null without one. */
  checkout(spec: CheckoutSpec, credential: string | null, io: { onOutput: (chunk: Buffer) => void; signal?: AbortSignal }): Promise<number | null>;
}

export interface CheckoutRun {
  buildId: string;
  lease: string;
  spec: CheckoutSpec;
  client: CheckoutClient;
  workspace: CheckoutWorkspace;
  signal: AbortSignal;
  /** Writes an `[expo-worker]` line to the build log. */
  note: (line: string) => void;
  /** The checkout's output, for the build log. */
  onOutput: (chunk: Buffer) => void;
  /** Adds values to mask in the build log from now on. */
  mask: (values: string[]) => void;
  retry?: Pick<RetryOptions, 'onRetry'>;
  /** The controller said the attempt is over (409): abort it. */
  onAttemptOver: (detail: string) => void;
}

/** What git prints when the server answers 401/403 and prompts are off. */
const AUTH_REFUSED = /could not read Username|Authentication failed|The requested URL returned error: 40[13]/;

/**
 * What git prints when the server or the network between failed, not the request: GitHub down
 * or the VM's network flaky. Such a checkout may work on another attempt.
 */
const TRANSIENT = /Could not resolve host|Failed to connect|Connection (?:timed out|refused|reset)|Operation timed out|The requested URL returned error: 5\d\d|RPC failed|early EOF|unexpected disconnect|gnutls_handshake|SSL_ERROR/;

/** How many lines of git's output a failure's message quotes. */
const TAIL_LINES = 5;

/** A failed checkout: the attempt's outcome, and whether the script ended without an exit status (the VM may be gone). */
export interface CheckoutFailure {
  body: Omit<CompleteBody, 'lease'>;
  noExit: boolean;
}

/**
 * Checks the commit out. Null when it worked (or the attempt was aborted meanwhile: the caller
 * sees its signal); otherwise the attempt's failure. Throws only what the SSH call throws.
 */
export async function checkoutCommit(r: CheckoutRun): Promise<CheckoutFailure | null> {
  const { spec } = r;
  const what = `checkout of ${spec.sha.slice(0, 12)} from ${shownUrl(spec.url)}`;
  const problem = checkoutProblem(spec);
  if (problem !== null) return { body: { status: 'failed', failureReason: 'build_failed', message: `${what} failed: ${problem}` }, noExit: false };
  r.note(`--- checkout ${spec.sha} (${spec.ref}) from ${shownUrl(spec.url)} ---`);
  let token: string | null;
  try {
    token = (await r.client.checkoutToken(r.buildId, r.lease, { retries: 5, signal: r.signal, onRetry: r.retry?.onRetry })).token;
  } catch (err) {
    if (r.signal.aborted) return null;
    if (isAttemptOver(err)) {
      r.onAttemptOver((err as Error).message);
      return null;
    }
    const message = `${what} failed: no clone token from the controller: ${(err as Error).message}`;
    // A 4xx is an answer (no repository to check out); anything else is the farm's trouble.
    const answered = (err as { code?: string }).code === 'HTTP_STATUS';
    return { body: { status: 'failed', failureReason: answered ? 'build_failed' : 'worker_lost', message }, noExit: false };
  }
  const credential = token === null ? null : basicCredential(token);
  if (token !== null && credential !== null) r.mask([token, credential]);
  if (r.signal.aborted) return null;
  let tail = '';
  const exit = await r.workspace.checkout(spec, credential, {
    signal: r.signal,
    onOutput: (chunk) => {
      r.onOutput(chunk);
      tail = (tail + chunk.toString('utf8')).slice(-4096);
    },
  });
  if (r.signal.aborted || exit === 0) return null;
  const last = tail
    .split(/[\r\n]+/)
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .slice(-TAIL_LINES)
    .join(' | ');
  // The script never prints the credential; a message is no place to find out otherwise.
  const scrubbed = token === null || credential === null ? last : last.split(token).join('***').split(credential).join('***');
  // git's own words for a 401 are about a username prompt: say what it means.
  const refused = AUTH_REFUSED.test(tail) ? `the server refused ${token === null ? 'an anonymous clone (no clone token: is the repository private and GitHub credentials not configured?)' : 'the clone token'}; ` : '';
  const failureReason = refused === '' && TRANSIENT.test(tail) ? ('worker_lost' as const) : ('build_failed' as const);
  const body = { status: 'failed' as const, failureReason, message: `${what} failed: ${refused}${scrubbed || `exit ${exit ?? 'without a status'}`}`.slice(0, 4000) };
  return { body, noExit: exit === null };
}
