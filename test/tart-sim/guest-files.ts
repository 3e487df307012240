/**
 * What makes an sshd look like a VM: a per-VM `sshd_config` (its own address, host key and
 * authorized_keys), a ForceCommand wrapper that starts every session in the VM's own home
 * (`vms/NAME/guest/`), and a `df` shim (the VM's configured disk), bind-mounted over the real
 * `df` inside a private mount namespace, so `bash -lc 'df -h /'` sees it too; without namespace
 * support it is only first on PATH (documented in README.md).
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));

const SFTP_SERVERS = ['/usr/lib/openssh/sftp-server', '/usr/libexec/openssh/sftp-server', '/usr/lib/ssh/sftp-server'];

/** Paths of one run's generated files. */
export interface GuestFiles {
  runtimeDir: string;
  guestHome: string;
  sshdConfig: string;
  /** argv that starts sshd (in its own mount namespace when possible). */
  sshdArgv: string[];
}

/** The VM's generated sshd_config (its path marks the VM's sshd processes, see procs.ts). */
export function sshdConfigPath(vmDir: string): string {
  return join(vmDir, 'sim-runtime', 'sshd_config');
}

function script(path: string, body: string): void {
  writeFileSync(path, `#!/bin/sh\n${body}\n`);
  chmodSync(path, 0o755);
}

function shellQuote(s: string): string {
  return `'${s.replaceAll("'", "'\\''")}'`;
}

let namespacesWork: boolean | undefined;

/** Whether private mount namespaces are available (root, or CAP_SYS_ADMIN in a container). */
function mountNamespacesWork(): boolean {
  namespacesWork ??=
    spawnSync('unshare', ['--mount', '--propagation', 'private', 'true'], { stdio: 'ignore', timeout: 5000 }).status === 0;
  return namespacesWork;
}

/** Writes the run's files into `vms/NAME/sim-runtime/` and returns how to start its sshd. */
export function writeGuestFiles(vmDir: string, opts: { ip: string; token: string; env: NodeJS.ProcessEnv }): GuestFiles {
  const runtimeDir = join(vmDir, 'sim-runtime');
  const guestHome = join(vmDir, 'guest');
  // The VM's own temporary directory, as a real VM has its own /tmp: what a build or its monitor
  // leaves there goes away with the VM instead of piling up in the host's /tmp.
  const guestTmp = join(vmDir, 'guest-tmp');
  mkdirSync(runtimeDir, { recursive: true });
  mkdirSync(guestHome, { recursive: true });
  mkdirSync(guestTmp, { recursive: true, mode: 0o1777 });
  // sshd refuses to start without its privilege separation directory.
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const bin = join(runtimeDir, 'bin');
  mkdirSync(bin, { recursive: true });

  // Sessions do not inherit the launcher's compile cache setting: the shim passes it on.
  const cache = opts.env.NODE_COMPILE_CACHE;
  const node = `${shellQuote(process.execPath)} --experimental-strip-types --disable-warning=ExperimentalWarning`;
  script(
    join(bin, 'df'),
    `${cache === undefined ? '' : `NODE_COMPILE_CACHE=${shellQuote(cache)} `}exec ${node} ${shellQuote(join(HERE, 'df-main.ts'))} ${shellQuote(vmDir)} "$@"`,
  );
  const sftp = SFTP_SERVERS.find((p) => existsSync(p)) ?? SFTP_SERVERS[0] ?? '';
  const session = join(runtimeDir, 'session');
  script(
    session,
    [
      `cd ${shellQuote(guestHome)} || exit 1`,
      `HOME=${shellQuote(guestHome)}; export HOME`,
      `TMPDIR=${shellQuote(guestTmp)}; export TMPDIR`,
      `PATH=${shellQuote(bin)}:$PATH; export PATH`,
      'case "${SSH_ORIGINAL_COMMAND:-}" in',
      `  '') exec "\${SHELL:-/bin/sh}" -l ;;`,
      `  internal-sftp|*/sftp-server) exec ${shellQuote(sftp)} -d ${shellQuote(guestHome)} ;;`,
      'esac',
      'exec "${SHELL:-/bin/sh}" -c "$SSH_ORIGINAL_COMMAND"',
    ].join('\n'),
  );

  // SHLVL=1: bash run by sshd sources the host user's ~/.bashrc unless its shell level is above 1
  // (bash's run_by_ssh check). A VM's sessions must not run the host's rc files: on CI machines
  // they start things like `pyenv rehash`, whose lock, left by a session killed with its VM,
  // hangs every later session.
  const setEnv = [`TART_SIM_VM_TOKEN=${opts.token}`, `TART_SIM_HOME=${opts.env.TART_SIM_HOME ?? ''}`, 'SHLVL=1'];
  const mark = opts.env.EXPO_WORKER_TEST_RUN;
  if (mark !== undefined) setEnv.push(`EXPO_WORKER_TEST_RUN=${mark}`);
  const sshdConfig = sshdConfigPath(vmDir);
  writeFileSync(
    sshdConfig,
    [
      `ListenAddress ${opts.ip}:22`,
      `HostKey ${join(vmDir, 'ssh_host_ed25519_key')}`,
      `AuthorizedKeysFile ${join(vmDir, 'authorized_keys')}`,
      'PidFile none',
      'UsePAM no',
      'StrictModes no',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PubkeyAuthentication yes',
      'PermitRootLogin prohibit-password',
      'PrintMotd no',
      'PrintLastLog no',
      'UseDNS no',
      'LogLevel ERROR',
      'MaxStartups 100:30:200',
      'MaxSessions 50',
      `Subsystem sftp ${sftp}`,
      `ForceCommand ${session}`,
      `SetEnv ${setEnv.join(' ')}`,
      '',
    ].join('\n'),
  );

  const sshd = ['/usr/sbin/sshd', '-D', '-e', '-f', sshdConfig];
  let sshdArgv = sshd;
  if (mountNamespacesWork()) {
    const inner = `mount --bind ${shellQuote(join(bin, 'df'))} /usr/bin/df && exec ${sshd.map(shellQuote).join(' ')}`;
    sshdArgv = ['unshare', '--mount', '--propagation', 'private', '--', '/bin/sh', '-c', inner];
  }
  return { runtimeDir, guestHome, sshdConfig, sshdArgv };
}
