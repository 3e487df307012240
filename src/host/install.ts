/**
 * `expo-worker install` and `expo-worker uninstall`: the agent as a macOS LaunchDaemon.
 *
 * install: validate every input (all problems reported at once), render the plist, then
 *   mkdir + chown the log directory → write the plist (0644, root-owned, atomically) →
 *   `plutil -lint` → `launchctl bootout` if the job is loaded (the old agent drains) →
 *   `launchctl enable` → `launchctl bootstrap system <plist>`.
 * uninstall: `launchctl bootout` if loaded → remove the plist. Logs stay.
 *
 * `--dry-run` prints the plist and the exact commands and neither writes nor runs anything,
 * on any OS; without it the command runs only on macOS, as root. Exit codes: 0 done, 1 refused
 * or failed, 64 bad arguments or input.
 */
import { chmodSync, existsSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { isExpoError } from '../protocol/errors.ts';
import { NodeExec, type Exec } from '../sys/exec.ts';
import { AGENT_LABEL, DEFAULT_EXIT_TIMEOUT_S, DEFAULT_LOG_DIR, DEFAULT_PLIST_PATH, agentPlist, builtCliPath } from './install-plist.ts';

const SERVICE = `system/${AGENT_LABEL}`;
const LAUNCHCTL = '/bin/launchctl';
/** macOS short user names: letters, digits, `_`, `.`, `-`, not starting with `.` or `-`. */
const USER_NAME_RE = /^[A-Za-z_][A-Za-z0-9_.-]{0,31}$/;
const BOOTSTRAP_ATTEMPTS = 3;

const INSTALL_USAGE = `Usage: expo-worker install [options]

Installs the agent as a LaunchDaemon (${DEFAULT_PLIST_PATH}) and starts it. Run with sudo.

Options:
  --config PATH       the agent's config (default: ~USER/.expo-worker/config.json)
  --user NAME         the user who owns the Tart VMs; the agent runs as this user
                      (default: the user who ran sudo)
  --node PATH         the node executable (default: this one, ${process.execPath});
                      a stable path such as /opt/homebrew/bin/node survives node upgrades
  --log-dir DIR       directory of agent.log and agent.err.log (default: ${DEFAULT_LOG_DIR})
  --plist-path PATH   where to write the plist (default: ${DEFAULT_PLIST_PATH})
  --exit-timeout S    seconds launchd lets the agent drain after SIGTERM (default: ${DEFAULT_EXIT_TIMEOUT_S})
  --dry-run           print the plist and the commands; write and run nothing
  -h, --help          this help`;

const UNINSTALL_USAGE = `Usage: expo-worker uninstall [options]

Stops the agent's LaunchDaemon (it drains first) and removes its plist. Logs are kept. Run with sudo.

Options:
  --plist-path PATH   the plist to remove (default: ${DEFAULT_PLIST_PATH})
  --dry-run           print the commands; run nothing
  -h, --help          this help`;

/** One side effect, printable for --dry-run. */
type Step =
  | { kind: 'exec'; argv: readonly string[]; onlyIfLoaded?: boolean }
  | { kind: 'write'; path: string; content: string; mode: number }
  | { kind: 'remove'; path: string };

/** Where the command writes. */
interface Io {
  out: (text: string) => void;
  err: (text: string) => void;
}

const processIo: Io = {
  out: (t) => process.stdout.write(`${t}\n`),
  err: (t) => process.stderr.write(`${t}\n`),
};

/** Quotes an argument for display the way a POSIX shell would need it. */
const shellQuote = (arg: string): string => (/^[A-Za-z0-9_./:=@%+,-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`);

function describe(step: Step): string {
  switch (step.kind) {
    case 'exec': {
      const line = `$ ${step.argv.map(shellQuote).join(' ')}`;
      return step.onlyIfLoaded ? `${line}    # only if \`launchctl print ${SERVICE}\` finds it loaded` : line;
    }
    case 'write':
      return `# write ${step.path} (mode ${step.mode.toString(8).padStart(4, '0')}, owner root), the plist above`;
    case 'remove':
      return `$ /bin/rm -f ${shellQuote(step.path)}`;
    default: {
      const never: never = step;
      throw new Error(`unknown step ${JSON.stringify(never)}`);
    }
  }
}

/** Refuses anything but a real run on macOS as root; a dry run goes anywhere. */
function refusal(dryRun: boolean, command: string): string | null {
  if (dryRun) return null;
  if (process.platform !== 'darwin') {
    return `${command} manages a macOS LaunchDaemon and runs only on macOS (this is ${process.platform}); use --dry-run to see what it would do`;
  }
  if (process.getuid?.() !== 0) return `${command} writes to /Library/LaunchDaemons and needs root: run it with sudo`;
  return null;
}

async function isLoaded(exec: Exec): Promise<boolean> {
  try {
    await exec.run([LAUNCHCTL, 'print', SERVICE], { timeoutMs: 10_000 });
    return true;
  } catch (err) {
    if (isExpoError(err, 'EXEC_FAILED')) return false;
    throw err;
  }
}

async function perform(steps: readonly Step[], exec: Exec, io: Io): Promise<void> {
  for (const step of steps) {
    switch (step.kind) {
      case 'exec': {
        if (step.onlyIfLoaded) {
          if (!(await isLoaded(exec))) continue;
          io.err(`expo-worker: stopping the loaded agent (it drains: running builds finish first)…`);
        }
        io.err(describe({ ...step, onlyIfLoaded: false }));
        const bootstrap = step.argv[1] === 'bootstrap';
        // Right after a bootout launchd sometimes answers "5: Input/output error"; a retry heals it.
        for (let attempt = 1; ; attempt++) {
          try {
            await exec.run(step.argv, { timeoutMs: bootstrap ? 30_000 : undefined });
            break;
          } catch (err) {
            if (!bootstrap || attempt >= BOOTSTRAP_ATTEMPTS || !isExpoError(err, 'EXEC_FAILED')) throw err;
            await new Promise((r) => setTimeout(r, 1000));
          }
        }
        break;
      }
      case 'write': {
        io.err(describe(step));
        const tmp = `${step.path}.tmp-${process.pid}`;
        writeFileSync(tmp, step.content, { mode: step.mode });
        chmodSync(tmp, step.mode); // writeFileSync's mode is filtered by the umask
        renameSync(tmp, step.path);
        break;
      }
      case 'remove':
        io.err(describe(step));
        if (existsSync(step.path)) await exec.run(['/bin/rm', '-f', step.path]);
        break;
      default: {
        const never: never = step;
        throw new Error(`unknown step ${JSON.stringify(never)}`);
      }
    }
  }
}

/** The user's home: the directory service on macOS; elsewhere (dry runs only) macOS's convention. */
async function homeOf(user: string, exec: Exec, io: Io): Promise<string | { problem: string }> {
  if (process.platform !== 'darwin') {
    io.err(`expo-worker: not macOS, so assuming ${user}'s home is /Users/${user}`);
    return `/Users/${user}`;
  }
  try {
    const { stdout } = await exec.run(['/usr/bin/dscl', '.', '-read', `/Users/${user}`, 'NFSHomeDirectory'], { timeoutMs: 10_000 });
    const home = /NFSHomeDirectory:\s*(\S+)/.exec(stdout)?.[1];
    if (home !== undefined && isAbsolute(home)) return home;
  } catch {
    // fall through: no such user
  }
  return { problem: `--user: there is no user '${user}' on this Mac` };
}

function defaultUser(): string | undefined {
  const sudoUser = process.env.SUDO_USER;
  if (sudoUser !== undefined && sudoUser !== '' && sudoUser !== 'root') return sudoUser;
  const me = userInfo().username;
  return me === 'root' ? undefined : me;
}

function checkConfig(path: string): string | null {
  let text: string;
  try {
    if (!statSync(path).isFile()) return `--config: ${path} is not a file`;
    text = readFileSync(path, 'utf8');
  } catch (err) {
    return `--config: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'}); create it first (see README.md)`;
  }
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return `--config: ${path} is not a JSON object`;
  } catch (err) {
    return `--config: ${path} is not valid JSON: ${(err as Error).message}`;
  }
  return null;
}

function badInput(io: Io, problems: readonly string[], command: string): number {
  io.err(`expo-worker ${command}: ${problems.length === 1 ? 'bad input' : `${problems.length} problems`}:`);
  for (const p of problems) io.err(`  - ${p}`);
  io.err(`Run 'expo-worker ${command} --help' for its options.`);
  return 64;
}

/** `expo-worker install`. */
export async function main(argv: string[], io: Io = processIo, exec: Exec = new NodeExec()): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        config: { type: 'string' },
        user: { type: 'string' },
        node: { type: 'string' },
        'log-dir': { type: 'string' },
        'plist-path': { type: 'string' },
        'exit-timeout': { type: 'string' },
        'dry-run': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    return badInput(io, [(err as Error).message], 'install');
  }
  if (values.help) {
    io.out(INSTALL_USAGE);
    return 0;
  }
  const dryRun = values['dry-run'];
  const refused = refusal(dryRun, 'install');
  if (refused !== null) {
    io.err(`expo-worker: ${refused}`);
    return 1;
  }

  const problems: string[] = [];
  const user = values.user ?? defaultUser();
  if (user === undefined) problems.push('--user: name the user who owns the Tart VMs (running as root, with no SUDO_USER)');
  else if (!USER_NAME_RE.test(user)) problems.push(`--user: '${user}' is not a user name (${USER_NAME_RE.source})`);
  else if (user === 'root') problems.push('--user: the agent must run as the user who owns the Tart VMs, not root');

  const absolute = (flag: string, value: string | undefined, fallback: string): string => {
    const path = resolve(value ?? fallback);
    if (value !== undefined && value.trim() === '') problems.push(`${flag}: empty path`);
    return path;
  };
  const logDir = absolute('--log-dir', values['log-dir'], DEFAULT_LOG_DIR);
  const plistPath = absolute('--plist-path', values['plist-path'], DEFAULT_PLIST_PATH);
  if (!plistPath.endsWith('.plist')) problems.push(`--plist-path: ${plistPath} must end in .plist`);
  if (!dryRun && !existsSync(dirname(plistPath))) problems.push(`--plist-path: the directory ${dirname(plistPath)} does not exist`);
  const nodePath = absolute('--node', values.node, process.execPath);
  if (!existsSync(nodePath) || !statSync(nodePath).isFile()) problems.push(`--node: ${nodePath} is not a file`);

  const exitTimeoutText = values['exit-timeout'] ?? String(DEFAULT_EXIT_TIMEOUT_S);
  const exitTimeoutS = Number(exitTimeoutText);
  if (!/^\d+$/.test(exitTimeoutText) || exitTimeoutS < 1 || exitTimeoutS > 86_400) {
    problems.push(`--exit-timeout: '${exitTimeoutText}' is not a whole number of seconds from 1 to 86400`);
  }

  let homeDir = '';
  if (user !== undefined && problems.every((p) => !p.startsWith('--user'))) {
    const home = await homeOf(user, exec, io);
    if (typeof home === 'string') homeDir = home;
    else problems.push(home.problem);
  }
  let configPath = '';
  if (values.config !== undefined || homeDir !== '') {
    configPath = resolve(values.config ?? `${homeDir}/.expo-worker/config.json`);
    const problem = checkConfig(configPath);
    if (problem !== null) problems.push(problem);
  }

  const cliPath = builtCliPath();
  if (!existsSync(cliPath)) {
    if (dryRun) io.err(`expo-worker: warning: ${cliPath} does not exist yet; run \`npm run build\` before installing`);
    else problems.push(`the built CLI ${cliPath} is missing: run \`npm run build\` first`);
  }
  if (problems.length > 0 || user === undefined) return badInput(io, problems, 'install');

  const plist = agentPlist({ nodePath, cliPath, configPath, userName: user, homeDir, logDir, exitTimeoutS });
  const steps: Step[] = [
    { kind: 'exec', argv: ['/bin/mkdir', '-p', logDir] },
    // The agent runs as `user` and launchd opens the log files for it; the directory is theirs.
    { kind: 'exec', argv: ['/usr/sbin/chown', user, logDir] },
    { kind: 'write', path: plistPath, content: plist, mode: 0o644 },
    { kind: 'exec', argv: ['/usr/bin/plutil', '-lint', plistPath] },
    { kind: 'exec', argv: [LAUNCHCTL, 'bootout', SERVICE], onlyIfLoaded: true },
    // A job once disabled (`launchctl disable`) refuses to bootstrap until it is enabled again.
    { kind: 'exec', argv: [LAUNCHCTL, 'enable', SERVICE] },
    { kind: 'exec', argv: [LAUNCHCTL, 'bootstrap', 'system', plistPath] },
  ];

  if (dryRun) {
    io.out(`# expo-worker install --dry-run: nothing is written and nothing is run.`);
    io.out(`# plist for ${plistPath}:`);
    io.out(plist.trimEnd());
    io.out('# commands:');
    for (const step of steps) io.out(describe(step));
    return 0;
  }
  await perform(steps, exec, io);
  io.out(`expo-worker: the agent is installed and started as ${SERVICE}, running as ${user}.`);
  io.out(`  status: sudo launchctl print ${SERVICE}`);
  io.out(`  logs:   ${resolve(logDir, 'agent.log')} and ${resolve(logDir, 'agent.err.log')}`);
  return 0;
}

/** `expo-worker uninstall`. */
export async function uninstallMain(argv: string[], io: Io = processIo, exec: Exec = new NodeExec()): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        'plist-path': { type: 'string' },
        'dry-run': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    return badInput(io, [(err as Error).message], 'uninstall');
  }
  if (values.help) {
    io.out(UNINSTALL_USAGE);
    return 0;
  }
  const dryRun = values['dry-run'];
  const refused = refusal(dryRun, 'uninstall');
  if (refused !== null) {
    io.err(`expo-worker: ${refused}`);
    return 1;
  }
  const plistPath = resolve(values['plist-path'] ?? DEFAULT_PLIST_PATH);
  if (!plistPath.endsWith('.plist')) return badInput(io, [`--plist-path: ${plistPath} must end in .plist`], 'uninstall');
  const steps: Step[] = [
    { kind: 'exec', argv: [LAUNCHCTL, 'bootout', SERVICE], onlyIfLoaded: true },
    { kind: 'remove', path: plistPath },
  ];
  if (dryRun) {
    io.out(`# expo-worker uninstall --dry-run: nothing is run.`);
    io.out('# commands:');
    for (const step of steps) io.out(describe(step));
    return 0;
  }
  await perform(steps, exec, io);
  io.out(`expo-worker: the agent's LaunchDaemon is stopped and ${plistPath} removed; logs are kept.`);
  return 0;
}
