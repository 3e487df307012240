/**
 * Why `expo-worker backup` or `migrate` stopped. These commands run beside the controller, not
 * through its API, so their errors are not API codes: `usage` (a flag, a path, a URL: exit 64),
 * `refused` (the state of a database forbids it: an existing PATH, an old schema, a target that
 * is not empty: exit 1) and `failed` (the work went wrong and nothing was kept: exit 1).
 */
export type StoreCommandErrorKind = 'usage' | 'refused' | 'failed';

export class StoreCommandError extends Error {
  readonly code: StoreCommandErrorKind;

  constructor(code: StoreCommandErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreCommandError';
    this.code = code;
  }
}
