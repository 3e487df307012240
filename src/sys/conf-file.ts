/**
 * Reads a JSON config file through `conf` (the product's config library) without its side
 * effects: `conf` creates a missing file on read, so callers check for it first and decide
 * what a missing file means; a file that is not valid JSON throws conf's error.
 */
import { basename, dirname, extname } from 'node:path';
import Conf from 'conf';

export function readConfFile(path: string): Record<string, unknown> {
  const ext = extname(path);
  const conf = new Conf<Record<string, unknown>>({
    cwd: dirname(path),
    configName: basename(path, ext),
    fileExtension: ext.replace(/^\./, ''),
    clearInvalidConfig: false,
    accessPropertiesByDotNotation: false,
    watch: false,
  });
  return conf.store;
}
