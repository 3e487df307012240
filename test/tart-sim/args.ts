/**
 * A small swift-argument-parser look-alike (spec §1): options before or after positionals,
 * `--opt value` and `--opt=value`, `--` ends options, and its error texts.
 */
import { usageError } from './errors.ts';

/** One option or flag of a subcommand. */
export interface OptionSpec {
  /** Long name without dashes, e.g. `wait`. */
  name: string;
  short?: string;
  /** Value placeholder (e.g. `wait`); absent for flags. */
  value?: string;
  /** Allowed values; a bad one gives `'X' is not a valid <value>`. */
  choices?: string[];
  /** Value must be an integer ≥ 0 (`--cpu`, `--wait`…). */
  numeric?: boolean;
}

/** A subcommand's grammar. */
export interface CommandSpec {
  name: string;
  /** Usage line(s) after `Usage: `. */
  usage: string;
  abstract: string;
  positionals: Array<{ name: string; optional?: boolean; variadic?: boolean }>;
  options: OptionSpec[];
}

/** Parsed arguments: positionals in order, options by long name (last value wins via `get`). */
export interface Parsed {
  positionals: string[];
  options: Map<string, string[]>;
  flags: Set<string>;
}

/** Last value of option `name`, if given. */
export function optionValue(p: Parsed, name: string): string | undefined {
  return p.options.get(name)?.at(-1);
}

function label(o: OptionSpec): string {
  return o.value === undefined ? `--${o.name}` : `--${o.name} <${o.value}>`;
}

/** Parses `argv` (the words after the subcommand) against `spec`; throws usage errors. */
export function parseArgs(spec: CommandSpec, argv: string[]): Parsed {
  const parsed: Parsed = { positionals: [], options: new Map(), flags: new Set() };
  let onlyPositionals = false;
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i] ?? '';
    if (onlyPositionals || !word.startsWith('-') || word === '-') {
      parsed.positionals.push(word);
      continue;
    }
    if (word === '--') {
      onlyPositionals = true;
      continue;
    }
    const eq = word.indexOf('=');
    const key = eq >= 0 ? word.slice(0, eq) : word;
    const opt = key.startsWith('--')
      ? spec.options.find((o) => o.name === key.slice(2))
      : spec.options.find((o) => o.short !== undefined && o.short === key.slice(1));
    if (opt === undefined) throw usageError(`Unknown option '${key}'`, spec.name);
    if (opt.value === undefined) {
      if (eq >= 0) throw usageError(`Unknown option '${word}'`, spec.name);
      parsed.flags.add(opt.name);
      continue;
    }
    let value: string | undefined;
    if (eq >= 0) value = word.slice(eq + 1);
    else if (i + 1 < argv.length && !(argv[i + 1] ?? '').startsWith('--')) value = argv[++i];
    if (value === undefined) throw usageError(`Missing value for '${label(opt)}'`, spec.name);
    if (opt.choices !== undefined && !opt.choices.includes(value)) {
      throw usageError(`'${value}' is not a valid <${opt.value}>`, spec.name);
    }
    if (opt.numeric === true && !/^\d+(\.\d+)?$/.test(value)) {
      throw usageError(`The value '${value}' is invalid for '${label(opt)}'`, spec.name);
    }
    parsed.options.set(opt.name, [...(parsed.options.get(opt.name) ?? []), value]);
  }
  const required = spec.positionals.filter((p) => p.optional !== true);
  if (parsed.positionals.length < required.length) {
    const missing = required[parsed.positionals.length];
    throw usageError(`Missing expected argument '<${missing?.name ?? '?'}>'`, spec.name);
  }
  const variadic = spec.positionals.some((p) => p.variadic === true);
  if (!variadic && parsed.positionals.length > spec.positionals.length) {
    throw usageError(`Unexpected argument '${parsed.positionals[spec.positionals.length] ?? ''}'`, spec.name);
  }
  return parsed;
}

/** `--help` text of a subcommand (stdout, exit 0). */
export function helpText(spec: CommandSpec): string {
  const lines = [`OVERVIEW: ${spec.abstract}`, '', `USAGE: tart ${spec.usage}`, ''];
  if (spec.positionals.length > 0) {
    lines.push('ARGUMENTS:');
    for (const p of spec.positionals) lines.push(`  <${p.name}>`);
    lines.push('');
  }
  lines.push('OPTIONS:');
  for (const o of spec.options) lines.push(`  ${o.short !== undefined ? `-${o.short}, ` : ''}${label(o)}`);
  lines.push('  --version               Show the version.');
  lines.push('  -h, --help              Show help information.');
  return `${lines.join('\n')}\n`;
}
