/** The grammar of every simulated subcommand (usage lines as tart 2.32 prints them). */
import type { CommandSpec, OptionSpec } from './args.ts';

const format: OptionSpec = { name: 'format', value: 'format', choices: ['text', 'json'] };

const runFlags = [
  'no-graphics', 'graphics', 'vnc', 'vnc-experimental', 'recovery', 'no-audio', 'no-clipboard', 'nested',
  'serial', 'suspendable', 'net-softnet', 'net-host', 'capture-system-keys', 'no-trackpad', 'no-pointer',
  'no-keyboard',
].map((name): OptionSpec => ({ name }));

const runOptions: OptionSpec[] = [
  'dir', 'disk', 'net-bridged', 'net-softnet-allow', 'net-softnet-block', 'net-softnet-expose', 'serial-path',
  'rosetta', 'root-disk-opts', 'net-softnet-control-fd', 'provisioning-opts',
].map((name): OptionSpec => ({ name, value: name }));

/** Every subcommand the simulator knows, by name. */
export const COMMANDS: Record<string, CommandSpec> = {
  list: {
    name: 'list',
    abstract: 'List created VMs',
    usage: 'list [--source <source>] [--format <format>] [--quiet]',
    positionals: [],
    options: [{ name: 'source', value: 'source', choices: ['local', 'oci'] }, format, { name: 'quiet', short: 'q' }],
  },
  clone: {
    name: 'clone',
    abstract: 'Clone a VM',
    usage: 'clone <source-name> <new-name> [--insecure] [--concurrency <concurrency>] [--prune-limit <n>]',
    positionals: [{ name: 'source-name' }, { name: 'new-name' }],
    options: [
      { name: 'insecure' },
      { name: 'concurrency', value: 'concurrency', numeric: true },
      { name: 'prune-limit', value: 'n', numeric: true },
      { name: 'deduplicate' },
    ],
  },
  run: {
    name: 'run',
    abstract: 'Run a VM',
    usage: 'run [<options>] <name>',
    positionals: [{ name: 'name' }],
    options: [...runFlags, ...runOptions],
  },
  ip: {
    name: 'ip',
    abstract: 'Get VM\'s IP address',
    usage: 'ip <name> [--wait <wait>] [--resolver <resolver>]',
    positionals: [{ name: 'name' }],
    options: [
      { name: 'wait', value: 'wait', numeric: true },
      { name: 'resolver', value: 'resolver', choices: ['dhcp', 'arp', 'agent'] },
    ],
  },
  stop: {
    name: 'stop',
    abstract: 'Stop a VM',
    usage: 'stop <name> [--timeout <timeout>]',
    positionals: [{ name: 'name' }],
    options: [{ name: 'timeout', short: 't', value: 'timeout', numeric: true }],
  },
  delete: {
    name: 'delete',
    abstract: 'Delete a VM',
    usage: 'delete <name> ...',
    positionals: [{ name: 'name', variadic: true }],
    options: [],
  },
  get: {
    name: 'get',
    abstract: 'Get a VM\'s configuration',
    usage: 'get <name> [--format <format>]',
    positionals: [{ name: 'name' }],
    options: [format],
  },
  set: {
    name: 'set',
    abstract: 'Modify VM\'s configuration',
    usage:
      'set <name> [--cpu <cpu>] [--memory <memory>] [--display <display>] [--display-refit] [--no-display-refit] ' +
      '[--random-mac] [--random-serial] [--disk <disk>] [--disk-size <disk-size>]',
    positionals: [{ name: 'name' }],
    options: [
      { name: 'cpu', value: 'cpu', numeric: true },
      { name: 'memory', value: 'memory', numeric: true },
      { name: 'display', value: 'display' },
      { name: 'display-refit' },
      { name: 'no-display-refit' },
      { name: 'random-mac' },
      { name: 'random-serial' },
      { name: 'disk', value: 'disk' },
      { name: 'disk-size', value: 'disk-size', numeric: true },
    ],
  },
  rename: {
    name: 'rename',
    abstract: 'Rename a local VM',
    usage: 'rename <name> <new-name>',
    positionals: [{ name: 'name' }, { name: 'new-name' }],
    options: [],
  },
  suspend: {
    name: 'suspend',
    abstract: 'Suspend a VM',
    usage: 'suspend <name>',
    positionals: [{ name: 'name' }],
    options: [],
  },
  prune: {
    name: 'prune',
    abstract: 'Prune OCI and IPSW caches or local VMs',
    usage: 'prune [--entries <entries>] [--older-than <n>] [--space-budget <n>]',
    positionals: [],
    options: [
      { name: 'entries', value: 'entries', choices: ['caches', 'vms'] },
      { name: 'older-than', value: 'n', numeric: true },
      { name: 'space-budget', value: 'n', numeric: true },
      { name: 'cache-budget', value: 'n', numeric: true },
    ],
  },
  pull: {
    name: 'pull',
    abstract: 'Pull a VM from a registry',
    usage: 'pull <remote-name> [--insecure] [--concurrency <concurrency>]',
    positionals: [{ name: 'remote-name' }],
    options: [{ name: 'insecure' }, { name: 'concurrency', value: 'concurrency', numeric: true }],
  },
};

/** Root usage, printed for unknown subcommands and rename's validation errors. */
export const ROOT_USAGE = 'Usage: tart <subcommand>';

/** Root `--help`. */
export const ROOT_HELP = [
  'OVERVIEW: Virtualization toolset to build, run and manage macOS and Linux virtual machines',
  '',
  'USAGE: tart <subcommand>',
  '',
  'OPTIONS:',
  '  --version               Show the version.',
  '  -h, --help              Show help information.',
  '',
  'SUBCOMMANDS:',
  ...Object.values(COMMANDS).map((c) => `  ${c.name.padEnd(24)}${c.abstract}`),
  '',
  '  See \'tart help <subcommand>\' for detailed help.',
  '',
].join('\n');
