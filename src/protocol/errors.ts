/**
 * Every error code of expo-worker, in one table: its HTTP status (for API errors), whether an
 * operation failing with it may be retried, and what it means. Codes are stable and prefixed by
 * area (`CFG_`, `EXEC_`, `SSH_`, `VM_`, `LEASE_`, `STORE_`, `API_`, `BUILD_`, `LOG_`, `AUTH_`, `USER_`, `WEBHOOK_`, `PROJECT_`, `GITHUB_`);
 * callers branch on `code`, never on the message. `retryable` is the one retry table: callers ask
 * `isRetryable`, never a list of their own. `docs/api.md` lists the API codes and
 * `docs/vm-layer.md` the others, and a test keeps both lists and this table in sync.
 */
export const ERROR_CODES = {
  API_BAD_REQUEST: { status: 400, retryable: false, summary: 'The request body, query or path failed validation.' },
  API_BODY_TOO_LARGE: { status: 413, retryable: false, summary: 'The request body is larger than the route accepts.' },
  API_NOT_FOUND: { status: 404, retryable: false, summary: 'No such route, build or worker.' },
  API_UNSUPPORTED_MEDIA_TYPE: { status: 415, retryable: false, summary: 'The body is not JSON.' },
  API_URI_TOO_LONG: { status: 414, retryable: false, summary: 'A path segment is longer than the route accepts.' },
  API_HEADERS_TOO_LARGE: { status: 431, retryable: false, summary: 'The request line and headers together exceed 16 KiB.' },
  API_REQUEST_TIMEOUT: { status: 408, retryable: true, summary: 'The request was not received in full within the server timeout.' },
  API_SHUTTING_DOWN: { status: 503, retryable: true, summary: 'The controller is stopping; try again shortly.' },
  API_INTERNAL: { status: 500, retryable: true, summary: 'An unexpected server error; details are in the controller log.' },
  AUTH_MISSING: { status: 401, retryable: false, summary: 'No `Authorization: Bearer <key>` header and no dashboard session.' },
  AUTH_INVALID: { status: 401, retryable: false, summary: 'The key, token or session is not known, has expired or has been revoked; or a sign-in name or password is wrong.' },
  AUTH_FORBIDDEN: { status: 403, retryable: false, summary: 'The key is valid but acts outside its scope or role (another worker, another build, or a call that needs a higher role).' },
  AUTH_CSRF: { status: 403, retryable: false, summary: 'A signed-in (cookie) request that changes something came without the session\'s CSRF token (`x-csrf-token` header or `_csrf` form field); nothing was done.' },
  AUTH_RATE_LIMITED: { status: 429, retryable: true, summary: 'Too many sign-in attempts for this name or address, or too many being checked at once; wait `Retry-After` seconds.' },
  AUTH_ROLE_TOO_HIGH: { status: 403, retryable: false, summary: 'A token or user cannot be given a role above the role of whoever creates it.' },
  USER_EXISTS: { status: 409, retryable: false, summary: 'A user with this name already exists.' },
  WORKER_BUSY: { status: 409, retryable: false, summary: 'The worker holds active builds: drain it and wait for them to end (or cancel them) before removing it.' },
  WEBHOOK_SIGNATURE: { status: 401, retryable: false, summary: 'A webhook delivery without a valid `X-Hub-Signature-256` (HMAC-SHA256 of the body under the webhook secret); nothing was recorded.' },
  WEBHOOK_BUSY: { status: 503, retryable: true, summary: 'As many webhook deliveries as the controller reads at once are already being received; redeliver shortly. Nothing was recorded.' },
  WEBHOOK_NOT_CONFIGURED: { status: 503, retryable: false, summary: 'The controller has no GitHub webhook secret (`--github-secret`), so it accepts no webhook delivery.' },
  PROJECT_EXISTS: { status: 409, retryable: false, summary: 'A project for this repository (in any case) already exists.' },
  BUILD_NOT_RERUNNABLE: { status: 409, retryable: false, summary: 'The build cannot be rerun as it was: its secret env values were erased when it ended, or its project is gone.' },
  GITHUB_UNREACHABLE: { status: 0, retryable: true, summary: "GitHub's API could not be reached, answered 5xx, or is rate-limiting; the call is retried." },
  GITHUB_REFUSED: { status: 422, retryable: false, summary: 'GitHub refused what the call needs (a clone token): the App is not installed on the repository, lacks a permission, or the repository is gone. Retrying does not help; fix the App or token.' },
  GITHUB_UNAVAILABLE: { status: 503, retryable: true, summary: 'GitHub did not give what the call needs (a clone token): it could not be reached, failed, or is rate-limiting. Retry shortly.' },
  GITHUB_STATUS: { status: 0, retryable: false, summary: "GitHub's API refused the call (401, 403, 404, 422…): a wrong token, a missing permission or a deleted repository." },
  WORKER_EXISTS: { status: 409, retryable: false, summary: 'A worker with this id already exists.' },
  LEASE_STALE: { status: 409, retryable: false, summary: 'The lease is not the current one for this build: the attempt was ended or reassigned. Abort it and recycle its VM.' },
  BUILD_OVER: { status: 409, retryable: false, summary: 'The build (or this attempt of it) has already ended (or was pruned).' },
  BUILD_BAD_TRANSITION: { status: 409, retryable: false, summary: 'The build cannot move to that phase from its current one.' },
  LOG_OFFSET_GAP: { status: 409, retryable: false, summary: 'The chunk starts past the end of the stored log; resend from `expectedOffset`.' },
  LOG_CONFLICT: { status: 409, retryable: false, summary: 'A chunk overlaps stored log bytes that differ from its own: another writer sent this range. Stop streaming this log.' },
  LOG_STREAMS_BUSY: { status: 503, retryable: true, summary: 'This controller already serves as many live log streams as it allows at once, in all or for this caller; reconnect shortly.' },
  LOG_TOO_LARGE: { status: 413, retryable: false, summary: "The build's log would exceed the controller's per-build cap." },
  STORE_CONFLICT: { status: 409, retryable: false, summary: 'A record with that key already exists.' },
  STORE_FULL: { status: 507, retryable: true, summary: "The disk under the controller's database (or its artifact directory) is full; nothing was written. Retry after `Retry-After` seconds." },
  STORE_FAILED: { status: 500, retryable: true, summary: 'The database failed.' },
  STORE_UNAVAILABLE: { status: 503, retryable: true, summary: 'The controller cannot reach its database (PostgreSQL down, restarting, out of connections, or cut off); another controller may. Retry, on another controller if there is one.' },
  CFG_INVALID: { status: 0, retryable: false, summary: 'The configuration is invalid; every bad field is named.' },
  EXEC_FAILED: { status: 0, retryable: false, summary: 'A child process exited non-zero or by a signal.' },
  EXEC_TIMEOUT: { status: 0, retryable: true, summary: 'A child process ran past its timeout and was killed with its process group.' },
  EXEC_SPAWN: { status: 0, retryable: false, summary: 'A child process could not be started (not found, not executable).' },
  SSH_REFUSED: { status: 0, retryable: true, summary: 'The SSH port refused the connection: sshd is not (yet) listening at that address.' },
  SSH_TIMEOUT: { status: 0, retryable: true, summary: 'The SSH connection or handshake timed out, or keepalives went unanswered: the VM is frozen, unreachable or still booting.' },
  SSH_AUTH_REJECTED: { status: 0, retryable: false, summary: 'sshd rejected the user or key: check vmUser, vmSshKey and the authorized_keys in the base image.' },
  SSH_HOST_KEY_MISMATCH: { status: 0, retryable: false, summary: 'The server presented a host key other than the pinned one: a stale IP pointing at another VM, or a changed image.' },
  SSH_CLOSED: { status: 0, retryable: true, summary: 'The SSH connection closed or failed before the operation finished.' },
  SSH_EXEC_TIMEOUT: { status: 0, retryable: true, summary: 'A command run over SSH ran past its timeout; its channel was closed.' },
  VM_NOT_FOUND: { status: 0, retryable: false, summary: 'tart: the named VM does not exist.' },
  VM_ALREADY_RUNNING: { status: 0, retryable: false, summary: 'tart run: the VM is already running.' },
  VM_IS_RUNNING: { status: 0, retryable: true, summary: 'tart delete: the VM is running; stop it first.' },
  VM_NOT_RUNNING: { status: 0, retryable: false, summary: 'tart stop: the VM is not running.' },
  VM_LIMIT: { status: 0, retryable: true, summary: 'The host already runs 2 macOS VMs, the most Apple allows.' },
  VM_NO_IP: { status: 0, retryable: true, summary: 'tart ip found no address for the VM within its wait.' },
  VM_TIMEOUT: { status: 0, retryable: true, summary: 'A tart call hung past its timeout and was killed with its process group.' },
  VM_TART_NOT_FOUND: { status: 0, retryable: false, summary: 'The tart executable was not found (tartPath, PATH, /opt/homebrew/bin, /usr/local/bin).' },
  VM_BAD_NAME: { status: 0, retryable: false, summary: 'A VM name contains characters other than letters, digits, `.`, `_` and `-`.' },
  VM_EXITED: { status: 0, retryable: true, summary: 'The `tart run` process exited: the VM is gone (crashed, stopped or failed to start).' },
  VM_UNHEALTHY: { status: 0, retryable: true, summary: 'A health check of a fresh clone failed; the detail names the check.' },
  VM_ABORTED: { status: 0, retryable: false, summary: 'Preparing or using the VM was aborted by the caller (cancel, shutdown); the clone was released.' },
  VM_UNKNOWN: { status: 0, retryable: false, summary: 'tart failed in a way not otherwise classified; the details carry argv, exit code and stderr.' },
  HTTP_UNREACHABLE: { status: 0, retryable: true, summary: 'The controller could not be reached.' },
  HTTP_STATUS: { status: 0, retryable: false, summary: 'The controller answered with an error status.' },
} as const satisfies Record<string, { status: number; retryable: boolean; summary: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

/** The base error: a stable code, a readable message, an optional cause and typed details. */
export class ExpoError<D extends object = Record<string, unknown>> extends Error {
  readonly code: ErrorCode;
  readonly details: D;
  constructor(code: ErrorCode, message: string, options: { cause?: unknown; details?: D } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ExpoError';
    this.code = code;
    this.details = options.details ?? ({} as D);
  }

  get status(): number {
    return ERROR_CODES[this.code].status;
  }

  get retryable(): boolean {
    return ERROR_CODES[this.code].retryable;
  }
}

export const isExpoError = (err: unknown, code?: ErrorCode): err is ExpoError =>
  err instanceof ExpoError && (code === undefined || err.code === code);

export const isErrorCode = (code: unknown): code is ErrorCode => typeof code === 'string' && Object.hasOwn(ERROR_CODES, code);

/**
 * Whether an operation that failed with `code` may be tried again: the catalogue's `retryable`,
 * the one table every retry decision reads (the agent's calls to the controller, its log
 * stream, the wait for a VM's SSH, the CLI's wording). A code not in the catalogue is not.
 */
export const isRetryable = (code: unknown): boolean => isErrorCode(code) && ERROR_CODES[code].retryable;

/** Statuses that say the request may succeed as sent, later: the server's trouble, a timeout, a rate limit. */
const isTransientStatus = (status: number): boolean => status >= 500 || status === 408 || status === 429;

/**
 * The catalogue code an HTTP error answer stands for. The controller's own answers carry their
 * code (`{"code", "message"}`): that code, when it is one of ours with this very status. An
 * answer without one came from something else on the way (a proxy, another server at that URL):
 * `HTTP_UNREACHABLE` (retried) when its status says try later — any 5xx, 408, 429 — since the
 * controller was not reached; otherwise `HTTP_STATUS` (a proxy's 404 page means a wrong URL,
 * which no retry fixes).
 */
export function answerErrorCode(status: number, body: unknown): ErrorCode {
  const code = typeof body === 'object' && body !== null ? (body as { code?: unknown }).code : undefined;
  if (isErrorCode(code) && ERROR_CODES[code].status === status) return code;
  return isTransientStatus(status) ? 'HTTP_UNREACHABLE' : 'HTTP_STATUS';
}
