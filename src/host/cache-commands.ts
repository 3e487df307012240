/**
 * `expo-worker cache list|clear [NAME]`: the host caches of the agent on this host. Reads the
 * agent's config (`--config`, default `~/.expo-worker/config.json`) for `cacheDir` and `caches`,
 * then works on the disk directly (caches.ts); the agent need not run.
 */
import { parseArgs } from 'node:util';
import { defaultConfigPath, loadAgentConfig, type AgentConfig } from '../agent/config.ts';
import { CacheStore, type CacheVariantInfo } from '../agent/caches.ts';
import { isExpoError } from '../protocol/errors.ts';

/** The CLI's exit codes (src/client/exit-codes.ts, out of this room's reach): done, bad usage or config. */
const EXIT = { ok: 0, usage: 64 } as const;

export const CACHE_HELP = `Usage: expo-worker cache list [NAME] [--config PATH] [--json]
       expo-worker cache clear [NAME] [--config PATH]

The host caches shared into build VMs (the agent config's "caches"), kept under its "cacheDir".

  list    each cache's variants: key, size, last use (NAME: that cache only)
  clear   removes every variant of NAME, or of every cache; the next build of each starts empty.
          A build running meanwhile keeps its own copy and may make it the new base when it
          succeeds.

Options:
  --config PATH  agent config (default ~/.expo-worker/config.json)
  --json         list as JSON: [{cache, variant, key, bytes, lastUsedMs}]
  -h, --help     show this help
`;

function human(bytes: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = bytes;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

function table(config: AgentConfig, rows: CacheVariantInfo[], names: string[]): string {
  const lines = [`cacheDir ${config.cacheDir}`];
  for (const name of names) {
    const spec = config.caches.find((c) => c.name === name);
    const mine = rows.filter((r) => r.cache === name).sort((a, b) => b.lastUsedMs - a.lastUsedMs);
    const total = mine.reduce((n, r) => n + r.bytes, 0);
    const limit = spec === undefined ? 'not configured' : `limit ${human(spec.maxSizeGb * 1e9)}, guest ${spec.guestPath}`;
    lines.push(`${name}: ${mine.length} variant${mine.length === 1 ? '' : 's'}, ${human(total)} (${limit})`);
    for (const r of mine) lines.push(`  ${r.variant}  ${human(r.bytes).padStart(9)}  ${new Date(r.lastUsedMs).toISOString()}  key ${JSON.stringify(r.key)}`);
  }
  return lines.join('\n');
}

/** `expo-worker cache …`; the exit code. */
export async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, strict: true, options: { config: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } });
  } catch (err) {
    console.error(`expo-worker cache: ${(err as Error).message}\n\n${CACHE_HELP}`);
    return EXIT.usage;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(CACHE_HELP);
    return EXIT.ok;
  }
  const [action, name, ...extra] = positionals;
  if ((action !== 'list' && action !== 'clear') || extra.length > 0) {
    console.error(`expo-worker cache: expected list or clear [NAME]\n\n${CACHE_HELP}`);
    return EXIT.usage;
  }
  let config: AgentConfig;
  try {
    config = loadAgentConfig(values.config ?? defaultConfigPath(), { requireController: false, checkFiles: false });
  } catch (err) {
    if (!isExpoError(err, 'CFG_INVALID')) throw err;
    console.error(`expo-worker cache: ${err.message}`);
    return EXIT.usage;
  }
  const store = new CacheStore({ cacheDir: config.cacheDir });
  const known = [...new Set([...config.caches.map((c) => c.name), ...store.cacheNames()])];
  if (name !== undefined && !known.includes(name)) {
    console.error(`expo-worker cache: no cache named ${JSON.stringify(name)} (known: ${known.join(', ') || 'none'})`);
    return EXIT.usage;
  }
  const names = name === undefined ? known : [name];
  if (action === 'list') {
    const rows = names.flatMap((n) => store.list(n));
    console.log(values.json ? JSON.stringify(rows) : table(config, rows, names));
    return EXIT.ok;
  }
  for (const n of names) {
    const removed = await store.clear(n);
    console.log(`${n}: removed ${removed} variant${removed === 1 ? '' : 's'}`);
  }
  return EXIT.ok;
}
