/**
 * Entry point of the tart simulator (`tart` shim → `node main.ts`). Dispatches a subcommand and
 * maps failures to tart's four stderr/exit-code paths (spec §1).
 */
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { helpText, parseArgs } from './args.ts';
import { COMMANDS, ROOT_HELP, ROOT_USAGE } from './commands.ts';
import { err, out, type Ctx } from './context.ts';
import { TartError, usageError } from './errors.ts';
import { openHome, type Home } from './home.ts';
import { lockHolder } from './locks.ts';
import { readGlobalFaults, readKnobs } from './vm-state.ts';
import { cmdClone, cmdGet, cmdList, cmdSet } from './cmd-catalog.ts';
import { cmdDelete, cmdPrune, cmdRename } from './cmd-manage.ts';
import { cmdIp, cmdStop, cmdSuspend } from './cmd-control.ts';
import { cmdRun } from './cmd-run.ts';
import { cmdSim } from './cmd-sim.ts';
import { cmdPull } from './cmd-oci.ts';

type Handler = (ctx: Ctx) => Promise<number>;

const HANDLERS: Record<string, Handler> = {
  list: cmdList,
  clone: cmdClone,
  get: cmdGet,
  set: cmdSet,
  delete: cmdDelete,
  rename: cmdRename,
  prune: cmdPrune,
  ip: cmdIp,
  stop: cmdStop,
  suspend: cmdSuspend,
  run: cmdRun,
  pull: cmdPull,
};

/** Deletes `tmp/` entries no live process holds (their owner keeps a lock file inside). */
function collectGarbage(home: Home): void {
  try {
    for (const entry of readdirSync(home.tmp)) {
      const dir = join(home.tmp, entry);
      if (lockHolder(join(dir, 'tart-sim-tmp.lock')) === undefined) rmSync(dir, { recursive: true, force: true });
    }
  } catch (e) {
    err(`Failed to perform garbage collection: ${(e as Error).message}`);
  }
}

function printError(e: TartError): void {
  if (e.style === 'plain') return err(e.message);
  err(`Error: ${e.message}`);
  if (e.style !== 'usage') return;
  const spec = e.command === undefined ? undefined : COMMANDS[e.command];
  err(spec === undefined ? ROOT_USAGE : `Usage: tart ${spec.usage}`);
  err(`  See 'tart ${spec === undefined ? '' : `${spec.name} `}--help' for more information.`);
}

async function main(argv: string[]): Promise<number> {
  const env = process.env;
  const knobs = readKnobs(env);
  const [name, ...rest] = argv;
  if (name === '--version' || (rest.includes('--version') && name !== 'sim')) {
    out(knobs.version);
    return 0;
  }
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    process.stdout.write(ROOT_HELP);
    return 0;
  }
  const home = openHome(env);
  // Marks every process this simulator starts (see procs.ts findSimProcesses).
  env.TART_SIM_HOME ??= home.root;
  if (name === 'sim') return cmdSim(home, env, knobs, rest);
  const spec = COMMANDS[name];
  if (spec === undefined) throw usageError(`Unexpected argument '${name}'`, undefined);
  if (rest.includes('-h') || rest.includes('--help')) {
    process.stdout.write(helpText(spec));
    return 0;
  }
  const hang = readGlobalFaults(home).hang ?? [];
  if (hang.includes(name) && env.TART_SIM_NO_HANG !== '1') {
    // Injected fault: this subcommand never finishes (drivers must time it out and kill it).
    setInterval(() => undefined, 60_000);
    return new Promise<number>(() => undefined);
  }
  if (name !== 'clone' && name !== 'pull') collectGarbage(home);
  const args = parseArgs(spec, rest);
  const handler = HANDLERS[name];
  if (handler === undefined) throw usageError(`Unexpected argument '${name}'`, undefined);
  return handler({ home, env, knobs, args });
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    if (e instanceof TartError) {
      printError(e);
      process.exit(e.exitCode);
    }
    err(`Error: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  },
);
