/**
 * Entry point of the tart simulator (`tart` shim → `node main.ts`). Dispatches a subcommand and
 * maps failures to tart's four stderr/exit-code paths (spec §1). Every tart call is a process of
 * its own, so each subcommand's module is imported only when that subcommand runs.
 */
import { parseArgs } from './args.ts';
import { COMMANDS, NOT_SIMULATED, ROOT_USAGE } from './commands.ts';
import { err, out, type Ctx } from './context.ts';
import { notSimulated, TartError, usageError } from './errors.ts';
import { openHome, readGlobalFaults } from './home.ts';
import { readKnobs, TART_VERSION } from './knobs.ts';

type Handler = (ctx: Ctx) => Promise<number>;

const HANDLERS: Record<string, () => Promise<Handler>> = {
  list: async () => (await import('./cmd-inspect.ts')).cmdList,
  get: async () => (await import('./cmd-inspect.ts')).cmdGet,
  ip: async () => (await import('./cmd-inspect.ts')).cmdIp,
  clone: async () => (await import('./cmd-manage.ts')).cmdClone,
  set: async () => (await import('./cmd-manage.ts')).cmdSet,
  delete: async () => (await import('./cmd-manage.ts')).cmdDelete,
  stop: async () => (await import('./cmd-manage.ts')).cmdStop,
  run: async () => (await import('./cmd-run.ts')).cmdRun,
};

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
  const [name, ...rest] = argv;
  if (name === '--version' || (name !== 'sim' && rest.includes('--version'))) {
    out(TART_VERSION);
    return 0;
  }
  if (name === undefined || name === '-h' || name === '--help' || rest.includes('-h') || rest.includes('--help')) {
    throw notSimulated('--help');
  }
  const home = openHome(env);
  // Marks every process this simulator starts (see procs.ts findSimProcesses).
  env.TART_SIM_HOME ??= home.root;
  if (name === 'sim') return (await import('./cmd-faults.ts')).cmdSim(home, rest);
  if (NOT_SIMULATED.has(name)) throw notSimulated(name);
  const spec = COMMANDS[name];
  const handler = HANDLERS[name];
  if (spec === undefined || handler === undefined) throw usageError(`Unexpected argument '${name}'`, undefined);
  const knobs = readKnobs(env);
  if (!knobs.noHang && (readGlobalFaults(home).hang ?? []).includes(name)) {
    // Injected fault: this subcommand never finishes (drivers must time it out and kill it).
    setInterval(() => undefined, 60_000);
    return new Promise<number>(() => undefined);
  }
  const args = parseArgs(spec, rest);
  return (await handler())({ home, env, knobs, args });
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
