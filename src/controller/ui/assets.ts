/**
 * The dashboard's static files, from a fixed map of names: no part of a request's path ever
 * reaches the filesystem. Ours are in ui/assets/; htmx and ansi_up come from their packages
 * (resolved the way Node resolves an import). Each is read once at start and served with a strong
 * ETag (its SHA-256) and a short max-age, so a deploy is picked up within a minute.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

/** One served file. */
export interface Asset {
  body: Buffer;
  contentType: string;
  etag: string;
}

const JS = 'text/javascript; charset=utf-8';
const CSS = 'text/css; charset=utf-8';

/** How long a browser may reuse an asset without asking, s. */
export const ASSET_MAX_AGE_S = 60;

/** Reads every asset the dashboard serves; throws at start when one is missing. */
export function loadAssets(uiDir: string): ReadonlyMap<string, Asset> {
  const require = createRequire(import.meta.url);
  const files: Record<string, { path: string; contentType: string }> = {
    'app.js': { path: join(uiDir, 'assets', 'app.js'), contentType: JS },
    'app.css': { path: join(uiDir, 'assets', 'app.css'), contentType: CSS },
    // htmx's package exports only its entry points; its dist/ sits beside its package.json.
    'htmx.min.js': { path: join(require.resolve('htmx.org/package.json'), '..', 'dist', 'htmx.min.js'), contentType: JS },
    // ansi_up 6 is one ES module (`export class AnsiUp`); app.js imports it as /ui/ansi-up.js (asset names have no underscore).
    'ansi-up.js': { path: join(require.resolve('ansi_up/package.json'), '..', 'ansi_up.js'), contentType: JS },
  };
  const assets = new Map<string, Asset>();
  for (const [name, f] of Object.entries(files)) {
    const body = readFileSync(f.path);
    assets.set(name, { body, contentType: f.contentType, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"` });
  }
  return assets;
}
