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
  /** Value must be a number ≥ 0 (`--wait`, `--timeout`). */
  numeric?: boolean;
}

/** A subcommand's grammar. */
export interface CommandSpec {
  name: string;
  /** Usage line after `Usage: tart `. */
  usage: string;
  /** Names of the required positionals, in order. */
  positionals: string[];
  /** Whether the last positional repeats (`delete <name> ...`). */
  variadic?: boolean;
  options: OptionSpec[];
}

/** Parsed arguments: positionals in order, option values by long name, flags. */
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
  if (parsed.positionals.length < spec.positionals.length) {
    throw usageError(`Missing expected argument '<${spec.positionals[parsed.positionals.length] ?? '?'}>'`, spec.name);
  }
  if (spec.variadic !== true && parsed.positionals.length > spec.positionals.length) {
    throw usageError(`Unexpected argument '${parsed.positionals[spec.positionals.length] ?? ''}'`, spec.name);
  }
  return parsed;
}
