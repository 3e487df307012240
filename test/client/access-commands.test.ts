/**
 * `expo-worker user …`, `token …`, `worker drain|resume|remove`, `audit` and `whoami` against a
 * real controller listening on loopback (real HTTP, real SQLite): a password or token secret is
 * printed once and appears in no other output, a token acts with its role, and bad input is a
 * usage error naming it.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import { auditMain, tokenMain, userMain, whoamiMain, workerMain } from '../../src/client/access-commands.ts';
import { cancelMain } from '../../src/client/commands.ts';
import { ADMIN_KEY, type TestController } from '../controller/support.ts';
import { captured, useListeningController, type Captured } from './in-process.ts';

const farm = useListeningController();
let c: TestController;
let url: string;
let home: string;
beforeEach(() => {
  ({ c, url, home } = farm);
});

const io = (key = ADMIN_KEY, stdin?: string): Captured =>
  captured({ env: { EXPO_WORKER_URL: url, EXPO_WORKER_KEY: key }, home, ...(stdin === undefined ? {} : { stdin }) });

describe('expo-worker user', () => {
  it('adds a user with a one-time password printed once, lists, resets and removes them', async () => {
    const add = io();
    expect(await userMain(['add', 'alice', '--role', 'operator'], add), add.err()).toBe(0);
    const password = add.out().trim();
    expect(password.length).toBeGreaterThanOrEqual(16);
    expect(add.err()).toContain('added user alice (operator)');
    expect(add.err()).not.toContain(password);

    const list = io();
    expect(await userMain(['list'], list)).toBe(0);
    expect(list.out()).toMatch(/^USER +ROLE/);
    expect(list.out()).toMatch(/alice +operator/);
    expect(list.out()).not.toContain(password);

    const reset = io(ADMIN_KEY, 'a long enough password\n');
    expect(await userMain(['passwd', 'alice', '--password-stdin'], reset), reset.err()).toBe(0);
    expect(reset.out()).toBe('new password for alice (operator)\n');

    const signout = io();
    expect(await userMain(['signout', 'alice'], signout)).toBe(0);
    expect(signout.out()).toBe('0 sessions of alice ended\n');

    const demote = io();
    expect(await userMain(['role', 'alice', 'viewer'], demote), demote.err()).toBe(0);
    expect(demote.out()).toBe('alice is now viewer\n');
    expect((await c.store.getUser('alice'))!.role).toBe('viewer');
    const badRole = io();
    expect(await userMain(['role', 'alice', 'root'], badRole)).toBe(64);
    expect(badRole.err()).toContain("'root' is not a role (viewer, operator, admin)");
    const nobody = io();
    expect(await userMain(['role', 'nobody', 'admin'], nobody)).toBe(65);
    expect(nobody.err()).toContain("user 'nobody' not found");

    const remove = io();
    expect(await userMain(['remove', 'alice'], remove)).toBe(0);
    const again = io();
    expect(await userMain(['remove', 'alice'], again)).toBe(65);
    expect(again.err()).toContain("user 'alice' not found");
  });

  it('refuses a bad name, a missing or unknown role, a short password and a taken name, naming each', async () => {
    const bad = io();
    expect(await userMain(['add', 'Alice!', '--role', 'viewer'], bad)).toBe(64);
    expect(bad.err()).toContain("'Alice!' is not a user name");
    const noRole = io();
    expect(await userMain(['add', 'bob'], noRole)).toBe(64);
    expect(noRole.err()).toContain('--role is required');
    const unknownRole = io();
    expect(await userMain(['add', 'bob', '--role', 'root'], unknownRole)).toBe(64);
    expect(unknownRole.err()).toContain("--role: 'root' is not a role (viewer, operator, admin)");
    const short = io(ADMIN_KEY, 'short\n');
    expect(await userMain(['add', 'bob', '--role', 'viewer', '--password-stdin'], short)).toBe(64);
    expect(short.err()).toContain('shorter than 12 characters');
    expect(await userMain(['add', 'bob', '--role', 'viewer'], io())).toBe(0);
    const taken = io();
    expect(await userMain(['add', 'bob', '--role', 'viewer'], taken)).toBe(65);
    expect(taken.err()).toContain('USER_EXISTS');
  });
});

describe('expo-worker token', () => {
  it('creates a token whose secret is printed once on stdout and acts with its role until revoked', async () => {
    const create = io();
    expect(await tokenMain(['create', 'ci viewer', '--role', 'viewer', '--expires-in-days', '7'], create), create.err()).toBe(0);
    const secret = create.out().trim();
    expect(secret).toMatch(/^ewt_[A-Za-z0-9_-]{40,}$/);
    expect(create.err()).toMatch(/^token tok_[a-z2-7]{16} 'ci viewer' \(viewer\) until \S+; the secret above is shown this once\n$/);
    const id = /token (tok_[a-z2-7]{16})/.exec(create.err())![1]!;

    const who = io(secret);
    expect(await whoamiMain([], who), who.err()).toBe(0);
    expect(who.out()).toBe('token ci viewer (viewer)\n');

    // A viewer reads but cannot cancel: 403 names the role, exit 77.
    const { id: buildId } = await c.submit();
    const cancel = io(secret);
    expect(await cancelMain([buildId], cancel)).toBe(77);
    expect(cancel.err()).toContain('403 AUTH_FORBIDDEN');

    const list = io();
    expect(await tokenMain(['list'], list)).toBe(0);
    expect(list.out()).toMatch(new RegExp(`${id} +ci viewer +viewer +\\(admin key\\) +active`));
    expect(list.out()).not.toContain(secret);

    expect(await tokenMain(['revoke', id], io())).toBe(0);
    const after = io(secret);
    expect(await whoamiMain([], after)).toBe(77);
    expect(after.err()).toContain('401 AUTH_INVALID');
    const listed = io();
    expect(await tokenMain(['list', '--json'], listed)).toBe(0);
    expect(JSON.parse(listed.out()).tokens[0].state).toBe('revoked');
  });

  it('refuses a secret given where the id goes, a bad expiry, and a token making a token', async () => {
    const create = io();
    expect(await tokenMain(['create', 'ops', '--role', 'admin'], create)).toBe(0);
    const secret = create.out().trim();
    const bySecret = io();
    expect(await tokenMain(['revoke', secret], bySecret)).toBe(64);
    expect(bySecret.err()).toContain('that is a token secret (ewt_…), not its id');
    expect(bySecret.err()).not.toContain(secret);
    const badDays = io();
    expect(await tokenMain(['create', 'x', '--role', 'viewer', '--expires-in-days', '0'], badDays)).toBe(64);
    expect(badDays.err()).toContain("--expires-in-days: '0'");
    const fromToken = io(secret);
    expect(await tokenMain(['create', 'y', '--role', 'viewer'], fromToken)).toBe(77);
    expect(fromToken.err()).toContain('403 AUTH_FORBIDDEN');
  });
});

describe('expo-worker worker, audit and whoami', () => {
  it('drains, resumes and removes a worker, and the audit log names who did each', async () => {
    await c.enrol('mac-1');
    const drain = io();
    expect(await workerMain(['drain', 'mac-1'], drain), drain.err()).toBe(0);
    expect(drain.out()).toBe('worker mac-1 drained: no new builds\n');
    const resume = io();
    expect(await workerMain(['resume', 'mac-1'], resume)).toBe(0);
    expect(resume.out()).toMatch(/^worker mac-1 resumed \(\w+\)\n$/);
    const remove = io();
    expect(await workerMain(['remove', 'mac-1'], remove)).toBe(0);
    expect(remove.out()).toBe('worker mac-1 removed; its key no longer works\n');

    const audit = io();
    expect(await auditMain(['--json'], audit), audit.err()).toBe(0);
    const actions = (JSON.parse(audit.out()).entries as { action: string; actor: string; target: string }[]).filter((e) => e.target === 'mac-1');
    expect(actions.map((e) => e.action)).toEqual(['worker.remove', 'worker.resume', 'worker.drain', 'worker.create']);
    expect(new Set(actions.map((e) => e.actor))).toEqual(new Set(['admin key']));

    const table = io();
    expect(await auditMain(['--action', 'worker.drain'], table)).toBe(0);
    expect(table.out()).toMatch(/^ID +AT +ACTOR +ACTION +TARGET +DETAIL\n\d+ +\S+ +admin key +worker\.drain +mac-1/);
    const bad = io();
    expect(await auditMain(['--action', 'rm -rf'], bad)).toBe(64);
    expect(bad.err()).toContain("--action: 'rm -rf' is not an action");

    const who = io();
    expect(await whoamiMain([], who)).toBe(0);
    expect(who.out()).toBe('the admin key (admin)\n');
  });
});
