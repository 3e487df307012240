/**
 * How a tart failure reaches stderr (spec §1): `plain` is a tart runtime error printed verbatim;
 * `prefixed` is a non-usage error from the validation phase or a foreign error (`Error: <msg>`);
 * `usage` is an argument or validation problem (`Error: <msg>`, usage, `See 'tart …'`, exit 64).
 */
export type ErrorStyle = 'plain' | 'prefixed' | 'usage';

/** A failure that ends the command with a given exit code and stderr shape. */
export class TartError extends Error {
  readonly exitCode: number;
  readonly style: ErrorStyle;
  /** For `usage` errors: the subcommand whose usage to print (undefined = root usage). */
  readonly command: string | undefined;

  constructor(message: string, exitCode: number, style: ErrorStyle = 'plain', command?: string) {
    super(message);
    this.exitCode = exitCode;
    this.style = style;
    this.command = command;
  }
}

/** A usage error of `command` (exit 64). */
export function usageError(message: string, command: string | undefined): TartError {
  return new TartError(message, 64, 'usage', command);
}

/** `the specified VM "NAME" does not exist`, exit 2. */
export function vmMissing(name: string): TartError {
  return new TartError(`the specified VM "${name}" does not exist`, 2);
}

/** What the simulator leaves out of tart: `tart-sim: 'tart WHAT' is not simulated`, exit 1. */
export function notSimulated(what: string): TartError {
  return new TartError(`tart-sim: 'tart ${what}' is not simulated`, 1);
}
