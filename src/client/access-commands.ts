/**
 * The people's access commands (docs/access.md): `expo-worker user …` (dashboard users),
 * `token …` (API tokens), `worker drain|resume|remove`, `audit` and `whoami`. Flags are parsed
 * eagerly (a bad one is named, exit 64) and the exit codes are those of the other commands.
 *
 * A password never goes on the command line (where `ps` and the shell history would keep it):
 * `user add` and `user passwd` print a one-time password the controller made, or read one from
 * standard input with `--password-stdin`. A token's secret is printed once, on stdout alone, so
 * `expo-worker token create ci --role operator > token.txt` keeps it out of the terminal.
 */
import { AUDIT_ACTIONS, PASSWORD_MIN_LENGTH, ROLES, TOKEN_ID_PATTERN, TOKEN_NAME_PATTERN, USER_NAME_PATTERN, isWorkerId, type AuditAction, type Role } from '../protocol/domain.ts';
import { pathOf, ROUTES } from '../protocol/routes.ts';
import type { AuditList, CreatedToken, CreatedUser, MeView, TokenView, UserView, WorkerView } from '../protocol/schemas.ts';
import { AdminApi } from './admin-api.ts';
import { parse, positional } from './args.ts';
import { CONNECTION, processIo, runCommand, UsageError, type CliIo, type Values } from './commands.ts';
import { resolveClientConfig } from './config.ts';
import { table } from './format.ts';

/** The access routes of the API, for these commands. */
export class AccessApi extends AdminApi {
  me(): Promise<MeView> {
    return this.json(ROUTES.me, pathOf(ROUTES.me, {}));
  }

  createUser(name: string, role: Role, password?: string): Promise<CreatedUser> {
    return this.json(ROUTES.createUser, pathOf(ROUTES.createUser, {}), { name, role, ...(password === undefined ? {} : { password }) });
  }

  async users(): Promise<UserView[]> {
    return (await this.json(ROUTES.listUsers, pathOf(ROUTES.listUsers, {}))).users;
  }

  async deleteUser(name: string): Promise<void> {
    await this.call(ROUTES.deleteUser.method, pathOf(ROUTES.deleteUser, { name }), undefined, `user '${name}'`);
  }

  setPassword(name: string, password?: string): Promise<CreatedUser> {
    return this.json(ROUTES.setUserPassword, pathOf(ROUTES.setUserPassword, { name }), password === undefined ? {} : { password }, `user '${name}'`);
  }

  setRole(name: string, role: Role): Promise<UserView> {
    return this.json(ROUTES.setUserRole, pathOf(ROUTES.setUserRole, { name }), { role }, `user '${name}'`);
  }

  async revokeSessions(name: string): Promise<number> {
    return (await this.json(ROUTES.revokeUserSessions, pathOf(ROUTES.revokeUserSessions, { name }), undefined, `user '${name}'`)).revoked;
  }

  createToken(name: string, role: Role, expiresInDays?: number): Promise<CreatedToken> {
    return this.json(ROUTES.createToken, pathOf(ROUTES.createToken, {}), { name, role, ...(expiresInDays === undefined ? {} : { expiresInDays }) });
  }

  async tokens(): Promise<TokenView[]> {
    return (await this.json(ROUTES.listTokens, pathOf(ROUTES.listTokens, {}))).tokens;
  }

  async revokeToken(id: string): Promise<void> {
    await this.call(ROUTES.revokeToken.method, pathOf(ROUTES.revokeToken, { id }), undefined, `token '${id}'`);
  }

  drainWorker(id: string): Promise<WorkerView> {
    return this.json(ROUTES.drainWorker, pathOf(ROUTES.drainWorker, { id }), {}, `worker '${id}'`);
  }

  resumeWorker(id: string): Promise<WorkerView> {
    return this.json(ROUTES.resumeWorker, pathOf(ROUTES.resumeWorker, { id }), {}, `worker '${id}'`);
  }

  async deleteWorker(id: string): Promise<void> {
    await this.call(ROUTES.deleteWorker.method, pathOf(ROUTES.deleteWorker, { id }), undefined, `worker '${id}'`);
  }

  audit(q: { limit: number; before?: number; action?: AuditAction }): Promise<AuditList> {
    return this.json(ROUTES.listAudit, pathOf(ROUTES.listAudit, {}, { limit: q.limit, before: q.before, action: q.action }));
  }
}

const accessApi = (values: Values, io: CliIo): AccessApi =>
  new AccessApi(resolveClientConfig({ url: values.url as string | undefined, key: values.key as string | undefined }, io.env, io.home));

export const USER_HELP = `Usage: expo-worker user <subcommand> …

Dashboard users (the admin key, or an admin signed in; never an API token). Roles: viewer (reads everything but secrets), operator (also
submits, cancels and reruns builds, drains and resumes workers), admin (also workers, users,
tokens, projects and secrets).

  user add NAME --role ROLE [--password-stdin] [--json]
      add a user; prints a one-time password made by the controller (shown this once), or takes
      the password from standard input with --password-stdin (at least ${PASSWORD_MIN_LENGTH} characters)
  user list [--json]
      the users with their roles and last sign-in
  user remove NAME
      remove a user with their sessions and tokens (what they did stays in the audit log)
  user passwd NAME [--password-stdin]
      set a new password (printed once, or from standard input); every session of theirs ends
      (their API tokens do not: revoke those with expo-worker token revoke ID)
  user role NAME ROLE
      give the user another role; a lower one ends their sessions, and their tokens act with no
      more than it from their next call
  user signout NAME
      end every dashboard session of the user now
NAME: lower-case letters, digits, . _ -, at most 64.
${CONNECTION}`;

export const TOKEN_HELP = `Usage: expo-worker token <subcommand> …

API tokens for scripts and CI (Authorization: Bearer ewt_…): each has a role no higher than its
maker's, expires, and can be revoked. Made with the admin key or from the dashboard's Tokens
page; a token cannot make another token.

  token create NAME --role ROLE [--expires-in-days N] [--json]
      make a token (default 90 days, at most 3650); its secret is printed once, on stdout
  token list [--json]
      your tokens (an admin's: every token) with role, state and last use
  token revoke TOKEN-ID
      revoke a token (tok_…, as list shows) at once
${CONNECTION}`;

export const WORKER_HELP = `Usage: expo-worker worker <subcommand> ID

  worker drain ID    hand the worker no new build (its running builds finish); operator
  worker resume ID   undo drain; operator
  worker remove ID   remove a worker that holds no build; its key stops working; admin
${CONNECTION}`;

export const AUDIT_HELP = `Usage: expo-worker audit [--limit N] [--before ID] [--action ACTION] [--json]

Who did what, newest first (admin only): builds submitted, cancelled and rerun, workers
enrolled, drained and removed, users, tokens, projects and secrets changed, sign-ins.

  --limit N        at most N entries (default 50, at most 500)
  --before ID      entries older than this id (the next page)
  --action ACTION  only this action (${AUDIT_ACTIONS.join(', ')})
  --json           print the entries as JSON
${CONNECTION}`;

export const WHOAMI_HELP = `Usage: expo-worker whoami [--json]

Prints who the configured key acts as and its role: the admin key, or an API token and its name.
${CONNECTION}`;

function role(values: Values): Role {
  const r = values.role as string | undefined;
  if (r === undefined) throw new UsageError(`--role is required: ${ROLES.join(', ')}`);
  if (!(ROLES as readonly string[]).includes(r)) throw new UsageError(`--role: '${r}' is not a role (${ROLES.join(', ')})`);
  return r as Role;
}

function userName(name: string): string {
  if (!new RegExp(USER_NAME_PATTERN).test(name)) throw new UsageError(`'${name}' is not a user name: lower-case letters, digits, . _ - (at most 64, starting with a letter or digit)`);
  return name;
}

/** A password from standard input (one trailing newline dropped), with `--password-stdin`; else none (the controller makes one). */
async function password(values: Values, io: CliIo): Promise<string | undefined> {
  if (!values['password-stdin']) return undefined;
  if (!io.stdin) throw new UsageError('--password-stdin: give the password on standard input');
  const value = (await io.stdin()).replace(/\r?\n$/, '');
  if ([...value].length < PASSWORD_MIN_LENGTH) throw new UsageError(`the password on standard input is shorter than ${PASSWORD_MIN_LENGTH} characters`);
  return value;
}

const json = (io: CliIo, value: unknown): number => (io.stdout(`${JSON.stringify(value, null, 2)}\n`), 0);

/** Prints a user and, when the controller made it, the one-time password (stdout) with a notice (stderr). */
function printCreated(io: CliIo, values: Values, created: CreatedUser, what: string): number {
  if (values.json) return json(io, created);
  if (created.password !== undefined) {
    io.stdout(`${created.password}\n`);
    io.stderr(`${what} ${created.user.name} (${created.user.role}); the password above is shown this once — sign in at /login\n`);
  } else io.stdout(`${what} ${created.user.name} (${created.user.role})\n`);
  return 0;
}

export function userMain(argv: string[], io: CliIo = processIo()): Promise<number> {
  return runCommand('user', USER_HELP, io, async () => {
    const { values, positionals } = parse(argv, { role: { type: 'string' }, 'password-stdin': { type: 'boolean' }, json: { type: 'boolean' } });
    if (values.help) return (io.stdout(`${USER_HELP}\n`), 0);
    const [sub, ...rest] = positionals;
    const a = () => accessApi(values, io);
    switch (sub) {
      case 'add': {
        const [name] = positional(rest, ['NAME']);
        const r = role(values);
        const pw = await password(values, io);
        return printCreated(io, values, await a().createUser(userName(name!), r, pw), 'added user');
      }
      case 'list': {
        positional(rest, []);
        const users = await a().users();
        if (values.json) return json(io, { users });
        io.stdout(users.length === 0 ? 'users: none (add one with expo-worker user add NAME --role admin)\n' : `${table(['USER', 'ROLE', 'CREATED', 'LAST SIGN-IN'], users.map((u) => [u.name, u.role, u.createdAt, u.lastSignInAt ?? '-']))}\n`);
        return 0;
      }
      case 'remove': {
        const [name] = positional(rest, ['NAME']);
        await a().deleteUser(userName(name!));
        io.stdout(`user ${name} removed, with their sessions and tokens\n`);
        return 0;
      }
      case 'passwd': {
        const [name] = positional(rest, ['NAME']);
        const pw = await password(values, io);
        return printCreated(io, values, await a().setPassword(userName(name!), pw), 'new password for');
      }
      case 'role': {
        const [name, newRole] = positional(rest, ['NAME', 'ROLE']);
        if (!(ROLES as readonly string[]).includes(newRole!)) throw new UsageError(`'${newRole}' is not a role (${ROLES.join(', ')})`);
        const user = await a().setRole(userName(name!), newRole as Role);
        if (values.json) return json(io, user);
        io.stdout(`${user.name} is now ${user.role}\n`);
        return 0;
      }
      case 'signout': {
        const [name] = positional(rest, ['NAME']);
        const n = await a().revokeSessions(userName(name!));
        io.stdout(`${n} session${n === 1 ? '' : 's'} of ${name} ended\n`);
        return 0;
      }
      case undefined:
        throw new UsageError('missing subcommand: add, list, remove, passwd, role or signout');
      default:
        throw new UsageError(`unknown subcommand '${sub}' (add, list, remove, passwd, role or signout)`);
    }
  });
}

const tokenRow = (t: TokenView): string[] => [t.id, t.name, t.role, t.owner ?? '(admin key)', t.state, t.expiresAt, t.lastUsedAt ?? '-'];

export function tokenMain(argv: string[], io: CliIo = processIo()): Promise<number> {
  return runCommand('token', TOKEN_HELP, io, async () => {
    const { values, positionals } = parse(argv, { role: { type: 'string' }, 'expires-in-days': { type: 'string' }, json: { type: 'boolean' } });
    if (values.help) return (io.stdout(`${TOKEN_HELP}\n`), 0);
    const [sub, ...rest] = positionals;
    const a = () => accessApi(values, io);
    switch (sub) {
      case 'create': {
        const [name] = positional(rest, ['NAME']);
        if (!new RegExp(TOKEN_NAME_PATTERN).test(name!)) throw new UsageError(`'${name}' is not a token name: letters, digits, space and . _ : @ / - (at most 64)`);
        const r = role(values);
        const days = values['expires-in-days'] as string | undefined;
        if (days !== undefined && !/^[1-9][0-9]{0,3}$/.test(days)) throw new UsageError(`--expires-in-days: '${days}' is not a number of days from 1 to 3650`);
        if (days !== undefined && Number(days) > 3650) throw new UsageError(`--expires-in-days: ${days} is more than 3650`);
        const created = await a().createToken(name!, r, days === undefined ? undefined : Number(days));
        if (values.json) return json(io, created);
        io.stdout(`${created.secret}\n`);
        io.stderr(`token ${created.token.id} '${created.token.name}' (${created.token.role}) until ${created.token.expiresAt}; the secret above is shown this once\n`);
        return 0;
      }
      case 'list': {
        positional(rest, []);
        const tokens = await a().tokens();
        if (values.json) return json(io, { tokens });
        io.stdout(tokens.length === 0 ? 'tokens: none\n' : `${table(['TOKEN', 'NAME', 'ROLE', 'OWNER', 'STATE', 'EXPIRES', 'LAST USED'], tokens.map(tokenRow))}\n`);
        return 0;
      }
      case 'revoke': {
        const [id] = positional(rest, ['TOKEN-ID']);
        if (!new RegExp(TOKEN_ID_PATTERN).test(id!)) {
          // A secret given here by mistake is not echoed back (the terminal or a CI log would keep it).
          if (id!.startsWith('ewt_')) throw new UsageError('that is a token secret (ewt_…), not its id: give the id (tok_…, as token list shows)');
          throw new UsageError(`'${id}' is not a token id (tok_ and 16 characters, as token list shows)`);
        }
        await a().revokeToken(id!);
        io.stdout(`token ${id} revoked\n`);
        return 0;
      }
      case undefined:
        throw new UsageError('missing subcommand: create, list or revoke');
      default:
        throw new UsageError(`unknown subcommand '${sub}' (create, list or revoke)`);
    }
  });
}

export function workerMain(argv: string[], io: CliIo = processIo()): Promise<number> {
  return runCommand('worker', WORKER_HELP, io, async () => {
    const { values, positionals } = parse(argv, { json: { type: 'boolean' } });
    if (values.help) return (io.stdout(`${WORKER_HELP}\n`), 0);
    const [sub, ...rest] = positionals;
    if (sub !== 'drain' && sub !== 'resume' && sub !== 'remove') {
      throw new UsageError(sub === undefined ? 'missing subcommand: drain, resume or remove' : `unknown subcommand '${sub}' (drain, resume or remove)`);
    }
    const [id] = positional(rest, ['ID']);
    if (!isWorkerId(id!)) throw new UsageError(`'${id}' is not a worker id`);
    const a = accessApi(values, io);
    if (sub === 'remove') {
      await a.deleteWorker(id!);
      io.stdout(`worker ${id} removed; its key no longer works\n`);
      return 0;
    }
    const w = sub === 'drain' ? await a.drainWorker(id!) : await a.resumeWorker(id!);
    if (values.json) return json(io, w);
    io.stdout(
      sub === 'drain'
        ? `worker ${id} drained: no new builds${w.runningBuilds.length > 0 ? `; ${w.runningBuilds.length} running build(s) go on (${w.runningBuilds.join(', ')})` : ''}\n`
        : `worker ${id} resumed (${w.status})\n`,
    );
    return 0;
  });
}

export function auditMain(argv: string[], io: CliIo = processIo()): Promise<number> {
  return runCommand('audit', AUDIT_HELP, io, async () => {
    const { values, positionals } = parse(argv, { limit: { type: 'string' }, before: { type: 'string' }, action: { type: 'string' }, json: { type: 'boolean' } });
    if (values.help) return (io.stdout(`${AUDIT_HELP}\n`), 0);
    positional(positionals, []);
    const limit = (values.limit as string | undefined) ?? '50';
    if (!/^[1-9][0-9]{0,2}$/.test(limit) || Number(limit) > 500) throw new UsageError(`--limit: '${limit}' is not a number from 1 to 500`);
    const before = values.before as string | undefined;
    if (before !== undefined && !/^[1-9][0-9]{0,15}$/.test(before)) throw new UsageError(`--before: '${before}' is not an entry id`);
    const action = values.action as string | undefined;
    if (action !== undefined && !(AUDIT_ACTIONS as readonly string[]).includes(action)) throw new UsageError(`--action: '${action}' is not an action (${AUDIT_ACTIONS.join(', ')})`);
    const page = await accessApi(values, io).audit({ limit: Number(limit), ...(before === undefined ? {} : { before: Number(before) }), ...(action === undefined ? {} : { action: action as AuditAction }) });
    if (values.json) return json(io, page);
    io.stdout(page.entries.length === 0 ? 'audit: no entries\n' : `${table(['ID', 'AT', 'ACTOR', 'ACTION', 'TARGET', 'DETAIL'], page.entries.map((e) => [String(e.id), e.at, e.actor, e.action, e.target, e.detail ?? '-']))}\n`);
    if (page.nextBefore !== null && !values.json) io.stderr(`older entries: expo-worker audit --before ${page.nextBefore}\n`);
    return 0;
  });
}

export function whoamiMain(argv: string[], io: CliIo = processIo()): Promise<number> {
  return runCommand('whoami', WHOAMI_HELP, io, async () => {
    const { values, positionals } = parse(argv, { json: { type: 'boolean' } });
    if (values.help) return (io.stdout(`${WHOAMI_HELP}\n`), 0);
    positional(positionals, []);
    const me = await accessApi(values, io).me();
    if (values.json) return json(io, me);
    io.stdout(me.kind === 'admin-key' ? `the admin key (admin)\n` : `${me.kind} ${me.name ?? ''} (${me.role})\n`);
    return 0;
  });
}
