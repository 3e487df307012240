/**
 * The grammar of every simulated subcommand: what the product's driver (`src/vm/tart-cli.ts`)
 * and the tests pass, with tart 2.32's usage lines. Other options are unknown (exit 64), as in a
 * tart that lacks them.
 */
import type { CommandSpec, OptionSpec } from './args.ts';

const format: OptionSpec = { name: 'format', value: 'format', choices: ['text', 'json'] };

/** Every simulated subcommand, by name. */
export const COMMANDS: Record<string, CommandSpec> = {
  list: {
    name: 'list',
    usage: 'list [--source <source>] [--format <format>] [--quiet]',
    positionals: [],
    options: [{ name: 'source', value: 'source', choices: ['local', 'oci'] }, format, { name: 'quiet', short: 'q' }],
  },
  get: { name: 'get', usage: 'get <name> [--format <format>]', positionals: ['name'], options: [format] },
  ip: {
    name: 'ip',
    usage: 'ip <name> [--wait <wait>] [--resolver <resolver>]',
    positionals: ['name'],
    options: [
      { name: 'wait', value: 'wait', numeric: true },
      { name: 'resolver', value: 'resolver', choices: ['dhcp', 'arp', 'agent'] },
    ],
  },
  clone: { name: 'clone', usage: 'clone <source-name> <new-name>', positionals: ['source-name', 'new-name'], options: [] },
  set: { name: 'set', usage: 'set <name> [--random-mac]', positionals: ['name'], options: [{ name: 'random-mac' }] },
  delete: { name: 'delete', usage: 'delete <name> ...', positionals: ['name'], variadic: true, options: [] },
  stop: {
    name: 'stop',
    usage: 'stop <name> [--timeout <timeout>]',
    positionals: ['name'],
    options: [{ name: 'timeout', short: 't', value: 'timeout', numeric: true }],
  },
  run: {
    name: 'run',
    usage: 'run [<options>] <name>',
    positionals: ['name'],
    options: [
      { name: 'no-graphics' },
      { name: 'net-softnet' },
      { name: 'net-softnet-allow', value: 'net-softnet-allow' },
      // Repeatable: [name:]path[:ro][,tag=TAG] (shares.ts).
      { name: 'dir', value: 'dir' },
    ],
  },
};

/** Real tart subcommands the simulator leaves out (`tart-sim: 'tart NAME' is not simulated`, exit 1). */
export const NOT_SIMULATED = new Set([
  'create', 'exec', 'export', 'fqn', 'help', 'import', 'login', 'logout', 'prune', 'pull', 'push', 'rename', 'suspend',
]);

/** Root usage, printed for unknown subcommands. */
export const ROOT_USAGE = 'Usage: tart <subcommand>';
