#!/usr/bin/env node
/**
 * `expo-worker <command>`: a table of commands, each loaded only when it is run so that
 * `expo-worker --help` stays fast and one command's dependencies never load for another.
 *
 * This is the entry an old Node.js may run (the built `dist/src/cli.js`): it checks the Node
 * version before any command loads, so its static imports (the version check, the exit codes)
 * use only what Node 18 and 20 have too, and everything else is imported dynamically.
 */
import { readFileSync } from 'node:fs';
import { EXIT } from './client/exit-codes.ts';
import { nodeTooOld, nodeTooOldMessage } from './sys/node-version.ts';

interface Command {
  summary: string;
  run: (argv: string[]) => Promise<number>;
}

const commands: Record<string, Command> = {
  agent: {
    summary: 'run the agent on a Mac host: poll for builds, run each in a fresh Tart VM',
    run: async (argv) => (await import('./agent/main.ts')).main(argv),
  },
  controller: {
    summary: 'run the controller (build queue, dispatch, heartbeats, watchdog)',
    run: async (argv) => (await import('./controller/main.ts')).main(argv),
  },
  doctor: { summary: 'check this host, its base VM and the controller', run: async (argv) => (await import('./host/doctor.ts')).main(argv) },
  install: { summary: 'install the agent as a macOS LaunchDaemon and start it', run: async (argv) => (await import('./host/install.ts')).main(argv) },
  cache: { summary: 'list or clear the host caches shared into build VMs (list|clear [NAME])', run: async (argv) => (await import('./host/cache-commands.ts')).main(argv) },
  uninstall: { summary: "stop the agent's LaunchDaemon and remove it", run: async (argv) => (await import('./host/install.ts')).uninstallMain(argv) },
  status: { summary: 'show the workers and recent builds (--json for scripts)', run: async (argv) => (await import('./client/commands.ts')).statusMain(argv) },
  submit: { summary: 'queue a build from --step flags or a JSON file; --follow streams its log', run: async (argv) => (await import('./client/commands.ts')).submitMain(argv) },
  logs: { summary: "print a build's log; --follow streams it until the build ends", run: async (argv) => (await import('./client/commands.ts')).logsMain(argv) },
  artifacts: { summary: "list a build's artifacts; --download saves them", run: async (argv) => (await import('./client/commands.ts')).artifactsMain(argv) },
  prune: { summary: 'delete finished builds older than an age, with their logs and artifacts (--dry-run counts)', run: async (argv) => (await import('./client/commands.ts')).pruneMain(argv) },
  cancel: { summary: 'cancel a queued or running build', run: async (argv) => (await import('./client/commands.ts')).cancelMain(argv) },
  rerun: { summary: "queue a new build of a finished build's work (a GitHub build: the same commit)", run: async (argv) => (await import('./client/project-commands.ts')).rerunMain(argv) },
  project: {
    summary: 'register GitHub repositories to build (add, list, remove) and set their secrets',
    run: async (argv) => (await import('./client/project-commands.ts')).projectMain(argv),
  },
  worker: { summary: 'drain, resume or remove a worker', run: async (argv) => (await import('./client/access-commands.ts')).workerMain(argv) },
  user: { summary: 'dashboard users and their roles (add, list, remove, passwd, signout)', run: async (argv) => (await import('./client/access-commands.ts')).userMain(argv) },
  token: { summary: 'API tokens with a role and an expiry (create, list, revoke)', run: async (argv) => (await import('./client/access-commands.ts')).tokenMain(argv) },
  audit: { summary: 'who did what: cancels, reruns, drains, users, tokens, sign-ins', run: async (argv) => (await import('./client/access-commands.ts')).auditMain(argv) },
  whoami: { summary: 'who the configured key acts as, and its role', run: async (argv) => (await import('./client/access-commands.ts')).whoamiMain(argv) },
  backup: { summary: "copy the controller's SQLite database while it runs, checked, 0600", run: async (argv) => (await import('./controller/store-commands.ts')).backupMain(argv) },
  migrate: { summary: 'move a farm from SQLite to an empty PostgreSQL database, all or nothing', run: async (argv) => (await import('./controller/store-commands.ts')).migrateMain(argv) },
};

/** The package version; the CLI runs from `dist/src/` when built and from `src/` in development. */
function version(): string {
  for (const rel of ['../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: string; version: string };
      if (pkg.name === 'expo-worker') return pkg.version;
    } catch {
      // not at this level
    }
  }
  return 'unknown';
}

function usage(): string {
  const width = Math.max(...Object.keys(commands).map((c) => c.length));
  const lines = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return [
    'Usage: expo-worker <command> [options]',
    '',
    'Commands:',
    ...lines,
    '',
    "Run 'expo-worker <command> --help' for a command's options.",
    '',
    'Exit codes: 0 done; with --follow 1 build failed, 2 cancelled, 3 infrastructure failure,',
    "4 timed out; 64-78 the CLI's own trouble (64 usage, 69 unreachable, 77 key refused,",
    "78 Node.js too old) — listed in 'expo-worker submit --help'.",
  ].join('\n');
}

async function cli(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    console.log(usage());
    return name === undefined ? EXIT.usage : 0;
  }
  if (name === '--version' || name === '-v') {
    console.log(version());
    return 0;
  }
  const command = commands[name];
  if (!command) {
    console.error(`expo-worker: unknown command '${name}'\n\n${usage()}`);
    return EXIT.usage;
  }
  return command.run(rest);
}

/**
 * A reader that goes away (`expo-worker status | head -1`) is not an error: when stdout's pipe
 * closes the command ends at once, quietly, with the exit code it had so far (0 unless set);
 * when stderr's closes, what would have gone there is dropped and the command carries on.
 */
function quietOnClosedPipes(): void {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    process.exit();
  });
  process.stderr.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    process.stderr.write = () => true;
  });
}

if (nodeTooOld(process.versions.node)) {
  process.stderr.write(nodeTooOldMessage(process.versions.node, process.execPath));
  process.exitCode = EXIT.nodeTooOld;
} else {
  quietOnClosedPipes();
  cli(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      console.error(`expo-worker: ${err instanceof Error ? err.message : String(err)}`);
      process.exitCode = EXIT.internal;
    },
  );
}
