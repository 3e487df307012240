/**
 * Argument parsing for the commands with subcommands (`project`, `user`, `token`, `worker`…):
 * the common flags plus the command's own, strictly (an unknown flag is a usage error naming
 * it), and positional arguments counted exactly.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { COMMON, UsageError, type Values } from './commands.ts';

export function parse(argv: string[], options: NonNullable<ParseArgsConfig['options']>): { values: Values; positionals: string[] } {
  try {
    return parseArgs({ args: argv, options: { ...COMMON, ...options }, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** Exactly these positionals (named in the message when one is missing or extra). */
export function positional(positionals: string[], names: string[]): string[] {
  if (positionals.length !== names.length) {
    throw new UsageError(positionals.length < names.length ? `missing ${names.slice(positionals.length).join(' ')}` : `unexpected argument '${positionals[names.length]}'`);
  }
  return positionals;
}
