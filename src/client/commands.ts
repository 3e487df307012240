/**
 * The people's commands: `expo-worker status`, `submit`, `logs`, `cancel`. Each parses its
 * flags eagerly (a bad one is named, exit 64), resolves the controller URL and admin key
 * (flags, environment, `~/.expo-worker/client.json`), and talks to the admin API.
 *
 * Exit codes (src/client/exit-codes.ts, listed in every --help): 0 done; 64 bad usage or
 * config; 65 the controller refused the request (an unknown build id, say); 69 the controller
 * cannot be reached; 70 anything unexpected; 77 the key was refused. `submit --follow` and
 * `logs --follow` exit with the build's result in 0–4 (succeeded, failed, cancelled,
 * infrastructure failure, timed out) and print the failing step's own exit code.
 */
import { mkdir } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { isBuildId, isRepo, SHA_PATTERN } from '../protocol/domain.ts';
import { isExpoError } from '../protocol/errors.ts';
import type { ArtifactProblem, ArtifactView, BuildView, CreateBuildBody } from '../protocol/schemas.ts';
import { AdminApi } from './admin-api.ts';
import { planDownloads, prepareTarget } from './download.ts';
import { resolveClientConfig } from './config.ts';
import { EXIT, EXIT_CODES_HELP, resultExitCode } from './exit-codes.ts';
import { follow } from './follow.ts';
import { ago, duration, sourceLabel, table } from './format.ts';

/** Where a command reads and writes: the real process by default. */
export interface CliIo {
  stdout: (text: string | Uint8Array) => void;
  stderr: (text: string) => void;
  env: NodeJS.ProcessEnv;
  home: string;
  /** `--follow`: the first wait before reconnecting a dropped log stream, ms. Default 500 (see `FollowIo`). */
  followReconnectMs?: number;
  /** `--follow`: how long to keep reconnecting without a connection, ms. Default 30 000. */
  followGiveUpMs?: number;
  /** Everything on standard input, to its end (`project secret set` reads a value from it). */
  stdin?: () => Promise<string>;
}

export const processIo = (): CliIo => ({
  stdout: (t) => void process.stdout.write(t),
  stderr: (t) => void process.stderr.write(t),
  env: process.env,
  home: homedir(),
  stdin: async () => {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks).toString('utf8');
  },
});

export const CONNECTION = `
Controller:
  --url URL   the controller (or EXPO_WORKER_URL, or "url" in ~/.expo-worker/client.json)
  --key KEY   the admin key or an API token (or EXPO_WORKER_KEY, or "key" in ~/.expo-worker/client.json)

${EXIT_CODES_HELP}`;

export const HELP = {
  status: `Usage: expo-worker status [--limit N] [--repo OWNER/NAME] [--ref REF] [--sha SHA] [--json]

Workers and recent builds (a GitHub build with its repo@ref and short commit), then the declared
artifacts those builds did not store.

  --limit N          recent builds to show (default 10)
  --repo OWNER/NAME  only builds from this GitHub repository (any case)
  --ref REF          only builds of this git ref: refs/heads/main, refs/tags/v1, refs/pull/7/head;
                     a name without refs/ is a branch (main is refs/heads/main)
  --sha SHA          only builds of this commit (40 hex digits)
  --json             print {health, workers, builds} as JSON
${CONNECTION}`,
  submit: `Usage: expo-worker submit (--step NAME=CMD ... | --file build.json) [options]

Queues a build and prints its id. --follow streams its log and exits with its result\n(0 succeeded, 1 failed, 2 cancelled, 3 infrastructure failure, 4 timed out).

  --step NAME=CMD     a step, in order (repeatable)
  --file PATH         the build as JSON: {"steps": [{"name", "run"}], "env", "labels", "timeoutS", "maxAttempts", "artifacts"}
  --env K=V           an environment variable for the steps (repeatable)
  --secret-env NAME[=VALUE]
                      a secret environment variable (repeatable): never shown by the API,
                      masked as *** in the log, erased when the build ends. NAME alone takes
                      the value from this command's own environment, so it stays out of
                      your shell history: MY_TOKEN=… expo-worker submit --secret-env MY_TOKEN
                      (values shorter than 4 characters are refused: they could not be masked)
  --label L           a label a worker must have (repeatable)
  --artifact PATTERN  a file to collect from the VM, relative to the steps' directory; * and ? allowed
                      (repeatable); one that matches nothing or fails to upload is recorded on the build
  --required-artifact PATTERN
                      the same, and the build fails (artifact_missing) without it (repeatable; in
                      --file: {"path": PATTERN, "required": true})
  --timeout S         the build's timeout in seconds
  --max-attempts N    attempts on infrastructure failures (1-5)
  --follow, -f        stream the log and progress until the build ends
  --json              print the queued build as JSON
${CONNECTION}`,
  logs: `Usage: expo-worker logs <build-id> [--follow]\n\nPrints a build's log; --follow streams it live (resuming by itself after a dropped connection)\nuntil the build ends and exits with its result\n(0 succeeded, 1 failed, 2 cancelled, 3 infrastructure failure, 4 timed out).\n${CONNECTION}`,
  artifacts: `Usage: expo-worker artifacts <build-id> [--download DIR] [--json]\n\nLists a build's collected artifacts (named by their path in the build's work directory) and the declared ones\nthat were not stored (NOT STORED, with the reason); --download saves them into DIR, checking each SHA-256.\n\n  --download DIR  save every artifact into DIR at its relative path (created if missing); a name that is\n                  also another's folder (a beside a/App.ipa) is saved as NAME.artifact; one that meets a\n                  symlink or a file in its way in DIR is not saved, named, and the exit code is 73\n  --json          print {artifacts, problems} as JSON\n${CONNECTION}`,
  prune: `Usage: expo-worker prune [--older-than AGE] [--dry-run] [--json]

Deletes finished builds (succeeded, failed, cancelled) with their logs and artifacts once they
finished more than AGE ago. Queued and running builds are never touched. The controller also
does this by itself every hour (its --retention-days).

  --older-than AGE  days, as 30 or 30d; decimals allowed (default: the controller's --retention-days)
  --dry-run         count what would be deleted; delete nothing
  --json            print the counts as JSON
${CONNECTION}`,
  cancel: `Usage: expo-worker cancel <build-id>\n\nCancels a queued build at once, or asks the worker to stop a running one.\n${CONNECTION}`,
};

type Name = keyof typeof HELP;
export const COMMON = { url: { type: 'string' }, key: { type: 'string' }, help: { type: 'boolean', short: 'h' } } as const;

/** A command line that cannot be run as given: the message and the command's help, exit 64. */
export class UsageError extends Error {}

export type Values = Record<string, string | boolean | string[] | undefined>;

function parse(_name: Name, argv: string[], options: NonNullable<ParseArgsConfig['options']>, positionals: number): { values: Values; positionals: string[] } {
  let parsed: { values: Values; positionals: string[] };
  try {
    parsed = parseArgs({ args: argv, options: { ...COMMON, ...options }, allowPositionals: positionals > 0, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (!parsed.values.help && parsed.positionals.length !== positionals) {
    throw new UsageError(positionals === 0 ? `unexpected argument '${parsed.positionals[0]}'` : 'give exactly one build id');
  }
  for (const p of parsed.positionals) {
    if (!isBuildId(p)) throw new UsageError(`'${p}' is not a build id (16 characters, a-z and 2-7, as submit prints)`);
  }
  return parsed;
}

/** Runs one command with errors turned into a message and an exit code. */
function run(name: Name, io: CliIo, body: () => Promise<number>): Promise<number> {
  return runCommand(name, HELP[name], io, body);
}

/** Runs the command `name` (its `--help` text `help`) with errors turned into a message and an exit code. */
export async function runCommand(name: string, help: string, io: CliIo, body: () => Promise<number>): Promise<number> {
  try {
    return await body();
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr(`expo-worker ${name}: ${err.message}\n\n${help}\n`);
      return EXIT.usage;
    }
    if (isExpoError(err)) {
      io.stderr(`expo-worker ${name}: ${err.message}\n`);
      if (err.code === 'CFG_INVALID') return EXIT.usage;
      if (err.code === 'HTTP_UNREACHABLE') return EXIT.unreachable;
      const status = (err.details as { status?: number }).status;
      if (status === 401 || status === 403) return EXIT.auth;
      return status !== undefined && status >= 400 && status < 500 ? EXIT.refused : EXIT.internal;
    }
    throw err;
  }
}

export function api(values: Values, io: CliIo): AdminApi {
  return new AdminApi(resolveClientConfig({ url: values.url as string | undefined, key: values.key as string | undefined }, io.env, io.home));
}

export function statusMain(argv: string[], io: CliIo = processIo()): Promise<number> {
  return run('status', io, async () => {
    const { values } = parse(
      'status',
      argv,
      { limit: { type: 'string' }, json: { type: 'boolean' }, repo: { type: 'string' }, ref: { type: 'string' }, sha: { type: 'string' } },
      0,
    );
    if (values.help) return (io.stdout(`${HELP.status}\n`), 0);
    const limit = values.limit === undefined ? 10 : Number(values.limit as string);
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new UsageError(`--limit: must be an integer from 1 to 1000 (got ${values.limit})`);
    const filter = sourceFilter(values);
    const a = api(values, io);
    const [health, workers, builds] = await Promise.all([a.health(), a.workers(), a.builds(limit, filter)]);
    if (values.json) return (io.stdout(`${JSON.stringify({ health, workers, builds }, null, 2)}\n`), 0);
    const now = Date.now();
    const q = health.queueStats;
    io.stdout(`controller: ${health.status}, ${q.queued ?? 0} queued, ${health.activeJobs} active, ${health.maxConcurrent} slots online\n\n`);
    io.stdout(
      workers.length === 0
        ? 'workers: none enrolled\n'
        : `${table(
            ['WORKER', 'STATUS', 'SLOTS', 'RUNNING', 'LAST SEEN', 'LABELS'],
            workers.map((w) => [w.id, w.status, String(w.slotsTotal ?? '-'), String(w.runningBuilds.length), ago(w.lastSeenAt, now), w.labels.join(',') || '-']),
          )}\n`,
    );
    io.stdout('\n');
    // A controller older than build sources sends none; the column shows only when a build has one.
    const sources = builds.map((b) => sourceLabel((b as Partial<BuildView>).source ?? null));
    const withSource = sources.some((x) => x !== '-');
    io.stdout(
      builds.length === 0
        ? Object.keys(filter).length > 0 ? 'builds: none match\n' : 'builds: none yet\n'
        : `${table(
            ['BUILD', 'STATUS', 'PROGRESS', 'WORKER', 'ATTEMPT', 'CREATED', 'TOOK', 'REASON', ...(withSource ? ['SOURCE'] : [])],
            builds.map((b, i) => [
              b.id,
              b.status,
              b.progress === null ? '-' : `${b.progress}%`,
              b.workerId ?? '-',
              `${b.attempt}/${b.maxAttempts}`,
              ago(b.createdAt, now),
              b.assignedAt === null ? '-' : duration((b.finishedAt === null ? now : Date.parse(b.finishedAt)) - Date.parse(b.assignedAt)),
              b.failureReason ?? b.waiting?.reason ?? '-',
              ...(withSource ? [sources[i]!] : []),
            ]),
          )}\n`,
    );
    // Why each queued build waits, in words (the API's `waiting`).
    for (const b of builds) if (b.waiting) io.stdout(`${b.id} waits: ${b.waiting.message}\n`);
    // A controller older than artifact problems sends none.
    const lost = builds.map((b) => ({ id: b.id, problems: (b as Partial<BuildView>).artifactProblems ?? [] })).filter((b) => b.problems.length > 0);
    if (lost.length > 0) {
      io.stdout('\nartifacts not stored:\n');
      for (const b of lost) for (const p of b.problems) io.stdout(`  ${b.id}  ${problemLine(p)}\n`);
    }
    return 0;
  });
}

/** `--repo`, `--ref` (a bare name is a branch) and `--sha`, checked here so a typo is named rather than answered 400. */
function sourceFilter(values: Values): { repo?: string; ref?: string; sha?: string } {
  const repo = values.repo as string | undefined;
  const ref = values.ref as string | undefined;
  const sha = values.sha as string | undefined;
  if (repo !== undefined && !isRepo(repo)) throw new UsageError(`--repo: '${repo}' is not a GitHub repository (owner/name)`);
  if (sha !== undefined && !new RegExp(SHA_PATTERN).test(sha.toLowerCase())) throw new UsageError(`--sha: '${sha}' is not a commit id (40 hex digits)`);
  return {
    ...(repo === undefined ? {} : { repo }),
    ...(ref === undefined ? {} : { ref: ref.startsWith('refs/') ? ref : `refs/heads/${ref}` }),
    ...(sha === undefined ? {} : { sha: sha.toLowerCase() }),
  };
}

/** One declared artifact that was not stored: `NOT STORED <name or pattern>  <reason>[, required]  <message>`. */
function problemLine(p: ArtifactProblem): string {
  return `NOT STORED ${p.name ?? p.pattern}\t${p.reason}${p.required ? ', required' : ''}\t${p.message}`;
}

function keyValue(flag: string, s: string): [string, string] {
  const i = s.indexOf('=');
  if (i <= 0) throw new UsageError(`${flag}: expected NAME=VALUE (got ${JSON.stringify(s)})`);
  return [s.slice(0, i), s.slice(i + 1)];
}

function intFlag(flag: string, s: string | undefined, min: number, max: number): number | undefined {
  if (s === undefined) return undefined;
  const n = Number(s);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`${flag}: must be an integer from ${min} to ${max} (got ${s})`);
  return n;
}

/** `--secret-env NAME=VALUE`, or `NAME` alone: the value from the CLI's own environment. */
function secretValue(s: string, env: NodeJS.ProcessEnv): [string, string] {
  if (s.includes('=')) return keyValue('--secret-env', s);
  const value = env[s];
  if (value === undefined) throw new UsageError(`--secret-env ${s}: no variable ${s} in this command's environment (give NAME=VALUE, or set ${s})`);
  return [s, value];
}

/** The submission from the flags (and `--file`): flags given override the file's fields. */
function submission(values: Values, processEnv: NodeJS.ProcessEnv): CreateBuildBody {
  const steps = (values.step as string[] | undefined) ?? [];
  const file = values.file as string | undefined;
  if (steps.length > 0 && file !== undefined) throw new UsageError('give the steps with --step or in --file, not both');
  let body: Record<string, unknown> = {};
  if (file !== undefined) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new UsageError(`--file: cannot read ${file}: ${(err as Error).message}`);
    }
    try {
      body = JSON.parse(text) as Record<string, unknown>;
    } catch (err) {
      throw new UsageError(`--file: ${file} is not valid JSON: ${(err as Error).message}`);
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new UsageError(`--file: ${file} must hold a JSON object`);
  } else if (steps.length === 0) {
    throw new UsageError('no steps: give --step NAME=CMD (repeatable) or --file build.json');
  }
  if (steps.length > 0) body.steps = steps.map((s) => keyValue('--step', s)).map(([name, run]) => ({ name, run }));
  const env = (values.env as string[] | undefined) ?? [];
  if (env.length > 0) body.env = { ...(body.env as Record<string, string> | undefined), ...Object.fromEntries(env.map((e) => keyValue('--env', e))) };
  const secretEnv = (values['secret-env'] as string[] | undefined) ?? [];
  if (secretEnv.length > 0) body.secretEnv = { ...(body.secretEnv as Record<string, string> | undefined), ...Object.fromEntries(secretEnv.map((e) => secretValue(e, processEnv))) };
  const labels = (values.label as string[] | undefined) ?? [];
  if (labels.length > 0) body.labels = labels;
  const artifacts: unknown[] = [
    ...((values.artifact as string[] | undefined) ?? []),
    ...((values['required-artifact'] as string[] | undefined) ?? []).map((path) => ({ path, required: true })),
  ];
  if (artifacts.length > 0) body.artifacts = [...((body.artifacts as unknown[] | undefined) ?? []), ...artifacts];
  const timeoutS = intFlag('--timeout', values.timeout as string | undefined, 1, 604_800);
  if (timeoutS !== undefined) body.timeoutS = timeoutS;
  const maxAttempts = intFlag('--max-attempts', values['max-attempts'] as string | undefined, 1, 5);
  if (maxAttempts !== undefined) body.maxAttempts = maxAttempts;
  return body as unknown as CreateBuildBody;
}

export function submitMain(argv: string[], io: CliIo = processIo()): Promise<number> {
  return run('submit', io, async () => {
    const { values } = parse(
      'submit',
      argv,
      {
        step: { type: 'string', multiple: true },
        file: { type: 'string' },
        env: { type: 'string', multiple: true },
        'secret-env': { type: 'string', multiple: true },
        label: { type: 'string', multiple: true },
        artifact: { type: 'string', multiple: true },
        'required-artifact': { type: 'string', multiple: true },
        timeout: { type: 'string' },
        'max-attempts': { type: 'string' },
        follow: { type: 'boolean', short: 'f' },
        json: { type: 'boolean' },
      },
      0,
    );
    if (values.help) return (io.stdout(`${HELP.submit}\n`), 0);
    const body = submission(values, io.env);
    const a = api(values, io);
    const build: BuildView = await a.submit(body);
    if (values.json) io.stdout(`${JSON.stringify(build, null, 2)}\n`);
    else io.stdout(`${build.id}\n`);
    // Queued, but no enrolled worker could ever take it: say so now rather than wait without a word.
    if (build.waiting?.reason === 'no_worker_with_labels') io.stderr(`expo-worker submit: warning: build ${build.id} may wait forever: ${build.waiting.message}\n`);
    if (!values.follow) {
      if (!values.json) io.stderr(`queued build ${build.id} (${build.steps.length} step${build.steps.length === 1 ? '' : 's'}); follow it with: expo-worker logs ${build.id} --follow\n`);
      return 0;
    }
    io.stderr(`queued build ${build.id}; following its log\n`);
    return resultExitCode(await follow(a, build.id, io));
  });
}

export function logsMain(argv: string[], io: CliIo = processIo()): Promise<number> {
  return run('logs', io, async () => {
    const { values, positionals } = parse('logs', argv, { follow: { type: 'boolean', short: 'f' } }, 1);
    if (values.help) return (io.stdout(`${HELP.logs}\n`), 0);
    const id = positionals[0]!;
    const a = api(values, io);
    if (values.follow) return resultExitCode(await follow(a, id, io));
    io.stdout(await a.logs(id, 0));
    return 0;
  });
}

export function cancelMain(argv: string[], io: CliIo = processIo()): Promise<number> {
  return run('cancel', io, async () => {
    const { values, positionals } = parse('cancel', argv, {}, 1);
    if (values.help) return (io.stdout(`${HELP.cancel}\n`), 0);
    const b = await api(values, io).cancel(positionals[0]!);
    if (b.status === 'cancelled') io.stdout(`build ${b.id} cancelled\n`);
    else if (b.cancelRequested && (b.status === 'succeeded' || b.status === 'failed')) io.stdout(`build ${b.id} had already ${b.status}\n`);
    else if (b.cancelRequested) io.stdout(`build ${b.id} is ${b.status}: cancel requested; its worker stops it at its next heartbeat\n`);
    else io.stdout(`build ${b.id} had already ${b.status}\n`);
    return 0;
  });
}

export function artifactsMain(argv: string[], io: CliIo = processIo()): Promise<number> {
  return run('artifacts', io, async () => {
    const { values, positionals } = parse('artifacts', argv, { download: { type: 'string' }, json: { type: 'boolean' } }, 1);
    if (values.help) return (io.stdout(`${HELP.artifacts}\n`), 0);
    const id = positionals[0]!;
    const a = api(values, io);
    const { artifacts: list, problems } = await a.artifacts(id);
    if (values.json) io.stdout(`${JSON.stringify({ artifacts: list, problems }, null, 2)}\n`);
    else {
      if (list.length === 0 && problems.length === 0) io.stdout(`build ${id} has no artifacts\n`);
      for (const x of list) io.stdout(`${x.name}\t${x.sizeBytes} bytes\tsha256 ${x.sha256}\n`);
      for (const p of problems) io.stdout(`${problemLine(p)}\n`);
    }
    const dir = values.download as string | undefined;
    return dir === undefined ? 0 : download(a, id, list, dir, io);
  });
}

/**
 * Saves the artifacts below `dir` at their relative paths (see download.ts): one that cannot be
 * saved is named on stderr and skipped, the others are saved, and the exit code is then
 * {@link EXIT.notSaved}. A controller error still stops the command.
 */
async function download(a: AdminApi, id: string, list: ArtifactView[], dir: string, io: CliIo): Promise<number> {
  const { targets, refused } = planDownloads(list);
  const notSaved = (name: string, why: string) => io.stderr(`expo-worker artifacts: artifact '${name}' not saved: ${why}\n`);
  for (const r of refused) notSaved(r.name, r.why);
  let failed = refused.length;
  try {
    await mkdir(dir, { recursive: true });
  } catch (err) {
    io.stderr(`expo-worker artifacts: cannot create the folder ${dir} (${(err as NodeJS.ErrnoException).code}): nothing saved\n`);
    return EXIT.notSaved;
  }
  for (const t of targets) {
    try {
      const at = await prepareTarget(dir, t.relPath);
      if ('why' in at) {
        notSaved(t.artifact.name, at.why);
        failed++;
        continue;
      }
      await a.downloadArtifact(id, t.artifact, at.path);
      io.stderr(t.renamedBecause === undefined ? `saved ${at.path}\n` : `saved ${t.artifact.name} as ${at.path}: ${t.renamedBecause}\n`);
    } catch (err) {
      // An artifact whose file the controller no longer has (404) costs that one only.
      if (isExpoError(err) && err.code === 'HTTP_STATUS' && err.details.status === 404) {
        notSaved(t.artifact.name, 'the controller no longer has its file (404)');
        failed++;
        continue;
      }
      if (isExpoError(err)) throw err;
      // A file-system error (EACCES, ENOSPC…) costs this artifact only; its message names the code.
      if ((err as NodeJS.ErrnoException).code === undefined) throw err;
      notSaved(t.artifact.name, (err as Error).message);
      failed++;
    }
  }
  if (failed > 0) io.stderr(`expo-worker artifacts: ${failed} of ${list.length} artifact${list.length === 1 ? '' : 's'} not saved (above); the others are in ${dir}\n`);
  return failed > 0 ? EXIT.notSaved : EXIT.ok;
}

export function pruneMain(argv: string[], io: CliIo = processIo()): Promise<number> {
  return run('prune', io, async () => {
    const { values } = parse('prune', argv, { 'older-than': { type: 'string' }, 'dry-run': { type: 'boolean' }, json: { type: 'boolean' } }, 0);
    if (values.help) return (io.stdout(`${HELP.prune}\n`), 0);
    const raw = values['older-than'] as string | undefined;
    let olderThanDays: number | undefined;
    if (raw !== undefined) {
      const m = /^([0-9]+(?:\.[0-9]+)?)d?$/.exec(raw.trim());
      olderThanDays = m ? Number(m[1]) : NaN;
      if (!Number.isFinite(olderThanDays) || olderThanDays > 36500) throw new UsageError(`--older-than: a number of days, as 30 or 30d (got ${raw})`);
    }
    const r = await api(values, io).prune({ ...(olderThanDays === undefined ? {} : { olderThanDays }), dryRun: values['dry-run'] === true });
    if (values.json) io.stdout(`${JSON.stringify(r, null, 2)}\n`);
    else {
      const what = `${r.builds} build${r.builds === 1 ? '' : 's'} finished before ${r.cutoff} (${r.logBytes} log bytes, ${r.artifacts} artifact${r.artifacts === 1 ? '' : 's'} of ${r.artifactBytes} bytes)`;
      io.stdout(r.dryRun ? `would delete ${what}; nothing deleted (--dry-run)\n` : `deleted ${what}\n`);
    }
    return 0;
  });
}
