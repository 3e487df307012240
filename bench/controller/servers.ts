/**
 * The servers the controller benchmarks measure: controllers on a fresh SQLite file or on a
 * database of their own in one throwaway PostgreSQL server (started on first use as the tests
 * start theirs: initdb + pg_ctl on loopback, test/support/postgres.ts, on the servers' CPUs when
 * pinned), the bare Fastify baseline, and a small JSON client for the controller's API.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { startPostgres, type Postgres } from '../../test/support/postgres.ts';
import { CLI, LISTENING, asServer, startProcess, type Started } from '../lib.ts';

export const KEY = 'bench-admin-key-0123456789';
/** Temp files of this run (SQLite databases, data dirs); removed by `closeServers()`. */
export const dir = mkdtempSync(join(tmpdir(), 'expo-bench-'));
/** The HTTP client's connection pool: enough for every long-polling worker. */
export const agent = new Agent({ connections: 4096, pipelining: 1 });

export type Backend = 'SQLite' | 'PostgreSQL';

/** GET (no body) or POST a JSON body with a bearer key; answers the parsed JSON (null when empty). */
export async function api(base: string, path: string, key: string, body?: unknown): Promise<any> {
  const res = await request(`${base}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    dispatcher: agent,
    headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.body.text();
  return text ? JSON.parse(text) : null;
}

/** The PostgreSQL server, started on first use; a string says why there is none. */
let postgres: Promise<Postgres | string> | null = null;
export function pgServer(): Promise<Postgres | string> {
  postgres ??= asServer(() => startPostgres()).catch((err: Error) => `PostgreSQL not available: ${err.message.split('\n')[0]}`);
  return postgres;
}

/** A fresh database in the PostgreSQL server, or why there is none. */
export async function pgDatabase(): Promise<string> {
  const pg = await pgServer();
  if (typeof pg === 'string') throw new Error(pg);
  return pg.createDatabase();
}

/**
 * Starts `count` controllers sharing one fresh database of `backend` (SQLite: one controller, a
 * file; PostgreSQL: a database of its own and one data directory). A string says why not.
 */
export async function controllers(name: string, backend: Backend, count = 1, timeoutS = 120): Promise<Started[] | string> {
  const dbArgs: string[] = [];
  if (backend === 'SQLite') {
    if (count !== 1) throw new Error('several controllers need PostgreSQL');
    dbArgs.push('--db', join(dir, `${name}.db`));
  } else {
    const pg = await pgServer();
    if (typeof pg === 'string') return pg;
    mkdirSync(join(dir, name));
    dbArgs.push('--db', await pg.createDatabase(), '--data-dir', join(dir, name));
  }
  const started: Started[] = [];
  // One after the other: the first one migrates the empty database.
  for (let i = 0; i < count; i++) {
    started.push(await startProcess([CLI, 'controller', ...dbArgs, '--api-key', KEY, '--port', '0', '--heartbeat-timeout', String(timeoutS), '--log-level', 'info'], LISTENING));
  }
  return started;
}

/** The bare Fastify route, the baseline of ingestion and of dispatch. */
export function startBare(): Promise<Started> {
  return startProcess([new URL('./bare-server.ts', import.meta.url).pathname], /bare listening on (\S+)/);
}

/** A table row for a measurement that could not run. */
export const skipped = (first: string, label: string, why: string, cols: string[]): Record<string, string> =>
  Object.fromEntries([[first, `${label}: skipped (${why})`], ...cols.map((c) => [c, ''])]);

/** Closes the client, stops PostgreSQL and removes this run's files. */
export async function closeServers(): Promise<void> {
  await agent.close();
  const pg = await postgres;
  if (pg !== null && pg !== undefined && typeof pg !== 'string') await pg.stop();
  rmSync(dir, { recursive: true, force: true });
}
