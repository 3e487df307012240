/**
 * A real git smart-HTTP server for tests, on 127.0.0.1: a Node HTTP server in front of
 * `git http-backend` (CGI) over bare repositories in a temp dir. Like GitHub it asks for
 * `Authorization: Basic` with user `x-access-token` and the token it was given (401 with
 * `WWW-Authenticate: Basic` otherwise); in anonymous mode it asks for nothing. Every request is
 * recorded (method, URL, whether the right credential came) so a test can assert that the token
 * was sent and never appeared in a URL. Repositories are made and changed with `git` run with argv
 * arrays and a config of its own (GIT_CONFIG_GLOBAL=/dev/null), so the host's config never
 * matters. `stop()` closes the server, kills any backend still running and removes the dir.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { timingSafeEqual } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { TEST_MARK } from './global-setup.ts';

/** The environment every git this helper runs gets: no host or user config, no prompts. */
export function isolatedGitEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: tmpdir(),
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_TERMINAL_PROMPT: '0',
    LANG: 'C',
    // The suite's leak check finds what a test file started by this mark.
    ...(process.env[TEST_MARK] === undefined ? {} : { [TEST_MARK]: process.env[TEST_MARK] }),
    ...extra,
  };
}

const IDENTITY = ['-c', 'user.name=Expo Test', '-c', 'user.email=test@example.invalid', '-c', 'init.defaultBranch=main', '-c', 'protocol.file.allow=always'];

/** Runs git with an argv array in `cwd`; its trimmed stdout. */
export function git(cwd: string, args: readonly string[]): string {
  return execFileSync('git', [...IDENTITY, ...args], { cwd, env: isolatedGitEnv(), encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

export interface RecordedRequest {
  method: string;
  /** The request's URL as sent (path and query). */
  url: string;
  /** The raw Authorization header, if any. */
  authorization: string | undefined;
  /** Whether it carried the right credential. */
  authorized: boolean;
}

export interface GitServerOptions {
  /** The token clones must present (user `x-access-token`); null: anonymous, no credential asked. */
  token: string | null;
  /**
   * Whether a commit that is not a branch or tag tip may be fetched by its id, as GitHub allows.
   * Default true; false refuses such wants (and speaks protocol v0, where git enforces that).
   */
  shaWants?: boolean;
}

export interface TestGitServer {
  /** `http://127.0.0.1:<port>` */
  readonly origin: string;
  readonly dir: string;
  readonly requests: readonly RecordedRequest[];
  /** Creates a bare repository `<name>.git` with a working clone to commit from; the clone URL. */
  createRepo(name: string): string;
  /** Commits `files` (path → contents) on `branch` (default main) and pushes; the new commit's sha. */
  commit(name: string, files: Record<string, string>, message?: string, branch?: string): string;
  /** The bare repository `<name>.git` on disk. */
  barePath(name: string): string;
  /** Adds repository `sub` of `host` (default this server) as a submodule at `path` of `name` (URL: the host's) and pushes; the commit's sha. */
  addSubmodule(name: string, sub: string, path: string, host?: TestGitServer): string;
  /** Changes the token asked for. */
  setToken(token: string | null): void;
  stop(): Promise<void>;
}

/** Parses CGI output: headers up to the first blank line, then the body. */
function splitCgi(buf: Buffer): { headers: [string, string][]; status: number; bodyStart: number } | null {
  let end = buf.indexOf('\r\n\r\n');
  let sep = 4;
  const lf = buf.indexOf('\n\n');
  if (end < 0 || (lf >= 0 && lf < end)) {
    end = lf;
    sep = 2;
  }
  if (end < 0) return null;
  const headers: [string, string][] = [];
  let status = 200;
  for (const line of buf.subarray(0, end).toString('latin1').split(/\r?\n/)) {
    const i = line.indexOf(':');
    if (i < 0) continue;
    const k = line.slice(0, i).trim();
    const v = line.slice(i + 1).trim();
    if (k.toLowerCase() === 'status') status = Number.parseInt(v, 10);
    else headers.push([k, v]);
  }
  return { headers, status, bodyStart: end + sep };
}

export async function startGitServer(options: GitServerOptions): Promise<TestGitServer> {
  const dir = mkdtempSync(join(tmpdir(), 'git-server-'));
  const root = join(dir, 'repos');
  const work = join(dir, 'work');
  mkdirSync(root);
  mkdirSync(work);
  let token = options.token;
  const shaWants = options.shaWants ?? true;
  const requests: RecordedRequest[] = [];
  const children = new Set<ChildProcess>();

  const authorized = (header: string | undefined): boolean => {
    if (token === null) return true;
    const want = Buffer.from(`Basic ${Buffer.from(`x-access-token:${token}`).toString('base64')}`);
    const got = Buffer.from(header ?? '');
    // Constant time for equal lengths; a different length is a refusal either way.
    return got.length === want.length && timingSafeEqual(got, want);
  };

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const ok = authorized(req.headers.authorization);
    requests.push({ method: req.method ?? '', url: req.url ?? '', authorization: req.headers.authorization, authorized: ok && token !== null });
    if (!ok) {
      req.resume();
      res.writeHead(401, { 'www-authenticate': 'Basic realm="test"', 'content-type': 'text/plain' }).end('Authentication failed\n');
      return;
    }
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const env: NodeJS.ProcessEnv = {
      ...isolatedGitEnv(),
      GIT_PROJECT_ROOT: root,
      GIT_HTTP_EXPORT_ALL: '1',
      PATH_INFO: decodeURIComponent(url.pathname),
      REQUEST_METHOD: req.method ?? 'GET',
      QUERY_STRING: url.search.replace(/^\?/, ''),
      CONTENT_TYPE: req.headers['content-type'] ?? '',
      REMOTE_ADDR: '127.0.0.1',
      // What GitHub allows: any reachable commit may be fetched by its id.
      GIT_CONFIG_COUNT: '1',
      GIT_CONFIG_KEY_0: 'uploadpack.allowReachableSHA1InWant',
      GIT_CONFIG_VALUE_0: String(shaWants),
    };
    if (req.headers['content-length'] !== undefined) env.CONTENT_LENGTH = req.headers['content-length'];
    if (req.headers['content-encoding'] !== undefined) env.HTTP_CONTENT_ENCODING = req.headers['content-encoding'];
    const proto = req.headers['git-protocol'];
    if (typeof proto === 'string' && shaWants) env.GIT_PROTOCOL = proto;
    const child = spawn('git', ['http-backend'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    children.add(child);
    let headersSent = false;
    let pending = Buffer.alloc(0);
    child.stdout.on('data', (c: Buffer) => {
      if (headersSent) {
        res.write(c);
        return;
      }
      pending = Buffer.concat([pending, c]);
      const cgi = splitCgi(pending);
      if (!cgi) return;
      headersSent = true;
      res.writeHead(cgi.status, cgi.headers.flat());
      res.write(pending.subarray(cgi.bodyStart));
    });
    child.stderr.resume();
    child.on('close', () => {
      children.delete(child);
      if (!headersSent) res.writeHead(500).end('http-backend gave no answer\n');
      else res.end();
    });
    child.stdin.on('error', () => undefined);
    req.pipe(child.stdin);
  };

  const server = createServer(handle);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const addr = server.address();
  const origin = `http://127.0.0.1:${typeof addr === 'object' && addr !== null ? addr.port : 0}`;

  const clone = (name: string) => join(work, name);
  const push = (name: string, branch: string) => git(clone(name), ['push', '-q', join(root, `${name}.git`), `HEAD:refs/heads/${branch}`]);

  let stopped = false;
  return {
    origin,
    dir,
    requests,
    createRepo(name) {
      git(root, ['init', '-q', '--bare', `${name}.git`]);
      git(work, ['init', '-q', name]);
      return `${origin}/${name}.git`;
    },
    commit(name, files, message = 'change', branch = 'main') {
      for (const [path, contents] of Object.entries(files)) {
        mkdirSync(dirname(join(clone(name), path)), { recursive: true });
        writeFileSync(join(clone(name), path), contents);
        git(clone(name), ['add', '--', path]);
      }
      git(clone(name), ['commit', '-q', '--allow-empty', '-m', message]);
      push(name, branch);
      return git(clone(name), ['rev-parse', 'HEAD']);
    },
    barePath(name) {
      return join(root, `${name}.git`);
    },
    addSubmodule(name, sub, path, host) {
      // Added from the local bare repository (no credential needed), then pointed at the server.
      git(clone(name), ['submodule', 'add', '-q', host ? host.barePath(sub) : join(root, `${sub}.git`), path]);
      git(clone(name), ['config', '-f', '.gitmodules', `submodule.${path}.url`, `${host ? host.origin : origin}/${sub}.git`]);
      git(clone(name), ['add', '.gitmodules']);
      git(clone(name), ['commit', '-q', '-m', `submodule ${path}`]);
      push(name, 'main');
      return git(clone(name), ['rev-parse', 'HEAD']);
    },
    setToken(t) {
      token = t;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      for (const c of children) c.kill('SIGKILL');
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
