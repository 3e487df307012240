/**
 * `expo-worker project …` (register GitHub repositories, set their secrets) and
 * `expo-worker rerun <build-id>`. Flags are parsed eagerly as in `commands.ts` (a bad one is
 * named, exit 64), and the same exit codes apply.
 *
 * A secret's value never goes on the command line (where `ps` and the shell history would keep
 * it): `project secret set` reads it from standard input — one trailing newline, as `echo`
 * adds, is dropped — or, with `--from-env VAR`, from this command's own environment.
 */
import { BUILD_ID_PATTERN, isBuildId, isRepo, PIPELINE_PATH_PATTERN, SECRET_NAME_PATTERN } from '../protocol/domain.ts';
import type { ProjectView } from '../protocol/schemas.ts';
import type { AdminApi } from './admin-api.ts';
import { api, CONNECTION, processIo, runCommand, UsageError, type CliIo, type Values } from './commands.ts';
import { parse, positional } from './args.ts';
import { table } from './format.ts';

export const PROJECT_HELP = `Usage: expo-worker project <subcommand> …

GitHub repositories the farm builds: a push or pull request to a registered repository builds
from its pipeline file; deliveries for other repositories are ignored.

  project add OWNER/NAME [--pipeline PATH] [--no-supersede] [--json]
      register a repository; PATH is its pipeline file (default .expo-worker.yml). A push cancels
      the unfinished builds of the commit it replaced on that branch unless --no-supersede
  project list [--json]
      the registered projects with their secrets' names
  project remove <ID|OWNER/NAME>
      delete a project and its secrets (its builds stay)
  project secret set <ID|OWNER/NAME> NAME [--from-env VAR]
      set a secret a pipeline build can name in its secrets: list. The value is read from
      standard input (one trailing newline dropped): printf %s "$TOKEN" | expo-worker project
      secret set octo/app APPLE_API_KEY — or taken from the variable VAR of this command's
      environment with --from-env. Never from the command line. NAME: A-Z, 0-9 and _; the
      value at least 4 characters (shorter ones could not be masked in the log)
  project secret rm <ID|OWNER/NAME> NAME
      delete a secret
  project deliveries [--limit N] [--json]
      the GitHub webhook deliveries received, newest first (default 20, at most 1000), with what
      became of each — built (and which builds), ignored or failed, and why
${CONNECTION}`;

export const RERUN_HELP = `Usage: expo-worker rerun <build-id> [--json]

Queues a new build of a finished build's work (the same steps, env, labels, artifacts and
limits; for a GitHub build the same commit, with its project's current secret values) and prints
its id. A build that is not finished, one whose project or secrets are gone, and a build
submitted with --secret-env (its values were erased when it ended) cannot be rerun.

  --json   print the queued build as JSON
${CONNECTION}`;

const PROJECT_ID = new RegExp(BUILD_ID_PATTERN);

/** A project named by its id or its repository (any case). */
async function projectOf(a: AdminApi, ref: string): Promise<ProjectView> {
  if (isRepo(ref)) {
    const found = (await a.projects()).find((p) => p.repo.toLowerCase() === ref.toLowerCase());
    if (!found) throw new UsageError(`no project for ${ref}: register it with expo-worker project add ${ref}`);
    return found;
  }
  if (!PROJECT_ID.test(ref)) throw new UsageError(`'${ref}' is neither a project id (16 characters, a-z and 2-7) nor a repository (owner/name)`);
  return { id: ref, repo: ref, pipelinePath: '', supersede: true, secretNames: [], createdAt: '' };
}

function secretName(name: string): string {
  if (!new RegExp(SECRET_NAME_PATTERN).test(name)) throw new UsageError(`'${name}' is not a secret name: upper-case letters, digits and _, not starting with a digit`);
  return name;
}

/** The secret's value: from `--from-env VAR`, or standard input with one trailing newline dropped. */
async function secretValue(values: Values, io: CliIo): Promise<string> {
  const from = values['from-env'] as string | undefined;
  if (from !== undefined) {
    const v = io.env[from];
    if (v === undefined) throw new UsageError(`--from-env ${from}: no variable ${from} in this command's environment`);
    return v;
  }
  if (!io.stdin) throw new UsageError('give the value on standard input or with --from-env VAR');
  const value = (await io.stdin()).replace(/\r?\n$/, '');
  if (value === '') throw new UsageError('no value on standard input (give it there, or use --from-env VAR)');
  return value;
}

export function projectMain(argv: string[], io: CliIo = processIo()): Promise<number> {
  return runCommand('project', PROJECT_HELP, io, async () => {
    const { values, positionals } = parse(argv, {
      pipeline: { type: 'string' },
      'no-supersede': { type: 'boolean' },
      'from-env': { type: 'string' },
      limit: { type: 'string' },
      json: { type: 'boolean' },
    });
    if (values.help) return (io.stdout(`${PROJECT_HELP}\n`), 0);
    const [sub, ...rest] = positionals;
    const a = () => api(values, io);
    switch (sub) {
      case 'add': {
        const [repo] = positional(rest, ['OWNER/NAME']);
        if (!isRepo(repo!)) throw new UsageError(`'${repo}' is not a GitHub repository (owner/name)`);
        const pipelinePath = values.pipeline as string | undefined;
        if (pipelinePath !== undefined && !new RegExp(PIPELINE_PATH_PATTERN).test(pipelinePath)) {
          throw new UsageError(`--pipeline: '${pipelinePath}' is not a path in the repository (relative, no . or .. segments)`);
        }
        const p = await a().createProject({ repo: repo!, ...(pipelinePath === undefined ? {} : { pipelinePath }), ...(values['no-supersede'] ? { supersede: false } : {}) });
        io.stdout(values.json ? `${JSON.stringify(p, null, 2)}\n` : `${p.id}\n`);
        if (!values.json) io.stderr(`registered ${p.repo} (pipeline ${p.pipelinePath}${p.supersede ? '' : ', no supersession'})\n`);
        return 0;
      }
      case 'list': {
        positional(rest, []);
        const projects = await a().projects();
        if (values.json) return (io.stdout(`${JSON.stringify({ projects }, null, 2)}\n`), 0);
        io.stdout(
          projects.length === 0
            ? 'projects: none registered\n'
            : `${table(
                ['PROJECT', 'REPO', 'PIPELINE', 'SUPERSEDE', 'SECRETS'],
                projects.map((p) => [p.id, p.repo, p.pipelinePath, p.supersede ? 'yes' : 'no', p.secretNames.join(',') || '-']),
              )}\n`,
        );
        return 0;
      }
      case 'remove': {
        const [ref] = positional(rest, ['ID|OWNER/NAME']);
        const api_ = a();
        const p = await projectOf(api_, ref!);
        await api_.deleteProject(p.id);
        io.stdout(`project ${p.repo === p.id ? p.id : `${p.repo} (${p.id})`} removed\n`);
        return 0;
      }
      case 'secret': {
        const [verb, ...args] = rest;
        if (verb !== 'set' && verb !== 'rm') throw new UsageError(verb === undefined ? 'missing set or rm after secret' : `unknown subcommand 'secret ${verb}' (set or rm)`);
        // Not echoed: a third argument is most likely the value itself.
        if (args.length > 2) throw new UsageError('too many arguments: a secret value is read from standard input or --from-env VAR, never from the command line');
        const [ref, rawName] = positional(args, ['ID|OWNER/NAME', 'NAME']);
        const name = secretName(rawName!);
        const api_ = a();
        if (verb === 'set') {
          const value = await secretValue(values, io);
          const p = await projectOf(api_, ref!);
          await api_.putProjectSecret(p.id, name, value);
          io.stdout(`secret ${name} of ${p.repo} set\n`);
        } else {
          if (values['from-env'] !== undefined) throw new UsageError('--from-env is for secret set');
          const p = await projectOf(api_, ref!);
          await api_.deleteProjectSecret(p.id, name);
          io.stdout(`secret ${name} of ${p.repo} deleted\n`);
        }
        return 0;
      }
      case 'deliveries': {
        positional(rest, []);
        const raw = (values.limit as string | undefined) ?? '20';
        if (!/^(?:[1-9][0-9]{0,2}|1000)$/.test(raw)) throw new UsageError(`--limit: '${raw}' is not a number from 1 to 1000`);
        const deliveries = await a().deliveries(Number(raw));
        if (values.json) return (io.stdout(`${JSON.stringify({ deliveries }, null, 2)}\n`), 0);
        io.stdout(
          deliveries.length === 0
            ? 'deliveries: none received\n'
            : `${table(
                ['RECEIVED', 'EVENT', 'REPO', 'OUTCOME', 'BUILDS', 'REASON'],
                deliveries.map((d) => [d.receivedAt, d.action === null ? d.event : `${d.event}.${d.action}`, d.repository ?? '-', d.outcome, d.builds.join(',') || '-', d.reason]),
              )}\n`,
        );
        return 0;
      }
      case undefined:
        throw new UsageError('missing subcommand: add, list, remove, secret or deliveries');
      default:
        throw new UsageError(`unknown subcommand '${sub}' (add, list, remove, secret or deliveries)`);
    }
  });
}

export function rerunMain(argv: string[], io: CliIo = processIo()): Promise<number> {
  return runCommand('rerun', RERUN_HELP, io, async () => {
    const { values, positionals } = parse(argv, { json: { type: 'boolean' } });
    if (values.help) return (io.stdout(`${RERUN_HELP}\n`), 0);
    const [id] = positional(positionals, ['<build-id>']);
    if (!isBuildId(id!)) throw new UsageError(`'${id}' is not a build id (16 characters, a-z and 2-7, as submit prints)`);
    const b = await api(values, io).rerun(id!);
    io.stdout(values.json ? `${JSON.stringify(b, null, 2)}\n` : `${b.id}\n`);
    if (!values.json) io.stderr(`queued build ${b.id}, a rerun of ${id}; follow it with: expo-worker logs ${b.id} --follow\n`);
    return 0;
  });
}
