/**
 * A real PostgreSQL server for the tests: a fresh cluster made with `initdb` in a temp dir and
 * started with `pg_ctl` on a loopback port, owned by the test file that starts it
 * (`startPostgres()` in `beforeAll`, `stop()` in `afterAll`: the server, its files and every
 * connection go with it). `initdb` refuses to run as root, so as root the cluster belongs to
 * the `postgres` user (Debian's package makes it). The binaries are Debian's
 * (`/usr/lib/postgresql/<version>/bin`; `script/bootstrap` installs the package), or the first
 * `initdb` on PATH elsewhere (macOS with Homebrew).
 *
 * `createDatabase()` makes an empty database and answers its URL: a conformance test or a
 * two-controller test gets a database of its own without paying for another cluster.
 */
import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll } from 'vitest';

const run = promisify(execFile);

export interface Postgres {
  /** `postgres://expo@127.0.0.1:<port>/postgres`: the cluster's default database, as its superuser. */
  url: string;
  port: number;
  /** Makes an empty database (a unique name unless given) and answers its URL. */
  createDatabase(name?: string): Promise<string>;
  /** Drops a database made by `createDatabase`, ending its open connections first. */
  dropDatabase(url: string): Promise<void>;
  /** Stops the server (fast shutdown, then immediate) and removes its files; safe to call twice. */
  stop(): Promise<void>;
}

/** The directory holding initdb, pg_ctl and postgres, or null when PostgreSQL is not installed. */
export function postgresBinDir(): string | null {
  const debian = '/usr/lib/postgresql';
  if (existsSync(debian)) {
    const versions = readdirSync(debian)
      .filter((v) => existsSync(join(debian, v, 'bin', 'initdb')))
      .sort((a, b) => Number(b) - Number(a));
    if (versions.length > 0) return join(debian, versions[0]!, 'bin');
  }
  try {
    const initdb = execFileSync('sh', ['-c', 'command -v initdb'], { encoding: 'utf8' }).trim();
    return initdb === '' ? null : join(initdb, '..');
  } catch {
    return null;
  }
}

const asRoot = (): boolean => process.getuid?.() === 0;

/** A free loopback port, as the kernel hands one out (the server may still lose it: then we retry). */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export async function startPostgres(): Promise<Postgres> {
  const bin = postgresBinDir();
  if (bin === null) throw new Error('PostgreSQL is not installed: run script/bootstrap (Debian package postgresql)');
  const dir = mkdtempSync(join(tmpdir(), 'expo-pg-'));
  const data = join(dir, 'data');
  // As root, the cluster is the postgres user's: it must be able to reach and own its files.
  const as = (cmd: string, args: string[]): [string, string[]] => (asRoot() ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args]);
  if (asRoot()) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    chownSync(dir, uid, gid);
  }
  chmodSync(dir, 0o700);
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    if (existsSync(join(data, 'postmaster.pid'))) {
      const [cmd, args] = as(join(bin, 'pg_ctl'), ['-D', data, '-m', 'fast', '-w', '-t', '20', 'stop']);
      await run(cmd, args).catch(async () => {
        const [c2, a2] = as(join(bin, 'pg_ctl'), ['-D', data, '-m', 'immediate', '-w', '-t', '20', 'stop']);
        await run(c2, a2).catch(() => undefined);
      });
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const [icmd, iargs] = as(join(bin, 'initdb'), ['-D', data, '-U', 'expo', '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync']);
    await run(icmd, iargs);
    let port = 0;
    for (let tries = 0; ; tries++) {
      port = await freePort();
      // Loopback only, no Unix socket (nothing under /var/run is ours); fsync off: a test server.
      const opts = `-c listen_addresses=127.0.0.1 -c port=${port} -c unix_socket_directories='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200`;
      const [scmd, sargs] = as(join(bin, 'pg_ctl'), ['-D', data, '-l', join(dir, 'server.log'), '-o', opts, '-w', '-t', '60', 'start']);
      try {
        await run(scmd, sargs);
        break;
      } catch (err) {
        if (tries >= 4) throw err;
      }
    }
    const url = `postgres://expo@127.0.0.1:${port}/postgres`;
    let n = 0;
    const admin = async <T>(fn: (c: pg.Client) => Promise<T>): Promise<T> => {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      try {
        return await fn(c);
      } finally {
        await c.end();
      }
    };
    return {
      url,
      port,
      async createDatabase(name) {
        const db = name ?? `t${process.pid}_${++n}_${Date.now().toString(36)}`;
        if (!/^[a-z_][a-z0-9_]{0,62}$/.test(db)) throw new Error(`bad database name ${db}`);
        await admin((c) => c.query(`CREATE DATABASE ${db} TEMPLATE template0`));
        return `postgres://expo@127.0.0.1:${port}/${db}`;
      },
      async dropDatabase(dbUrl) {
        const db = new URL(dbUrl).pathname.slice(1);
        if (!/^[a-z_][a-z0-9_]{0,62}$/.test(db)) throw new Error(`bad database name ${db}`);
        await admin((c) => c.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`));
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * One server for the calling test file: started in `beforeAll`, stopped in `afterAll` (whatever
 * the tests did; hooks run as a stack, so a file's own later `afterAll` — ending the processes
 * using it — runs before the stop). Answers a getter for use inside tests and hooks.
 */
export function usePostgres(): () => Postgres {
  let server: Postgres | undefined;
  beforeAll(async () => {
    server = await startPostgres();
  }, 120_000);
  afterAll(async () => {
    await server?.stop();
  });
  return () => {
    if (server === undefined) throw new Error('PostgreSQL did not start');
    return server;
  };
}
