/**
 * Reads a JSON config file as `conf` does for a store without schema, defaults or encryption
 * (a byte order mark skipped, `JSON.parse`, an error that does not quote the file), with
 * nothing but `node:fs`. The agent reads its config this way: `conf` brings ajv, semver and
 * atomically with it (~7 MB of a daemon that idles, docs/benchmarks.md), for a read that
 * needs none of them. The one-shot commands keep `conf` (conf-file.ts).
 */
import { readFileSync } from 'node:fs';

/** The file's JSON; throws the read error, or a SyntaxError naming the file and not its text (it may hold keys). */
export function readJsonConfig(path: string): unknown {
  const text = readFileSync(path, 'utf8').replace(/^\uFEFF/, '');
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new SyntaxError(`The config file \`${path}\` is not valid JSON.`);
  }
}
