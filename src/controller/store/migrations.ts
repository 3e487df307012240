/**
 * Versioned schema migrations. Each runs once, in order, inside a transaction, and is recorded
 * in `schema_migrations`; a database newer than this code is refused rather than guessed at.
 * A step is SQL, or SQL followed by a JS `up` for what SQL alone cannot do (hashing the values
 * already stored, say); both run in the same transaction.
 */
import { createHash } from 'node:crypto';
import type { DatabaseSync } from 'node:sqlite';

export interface Migration {
  version: number;
  name: string;
  sql: string;
  up?: (db: DatabaseSync) => void;
}

/** How leases are stored (SHA-256, hex) — the same digest `auth.hashSecret` makes. */
const sha256Hex = (s: string): string => createHash('sha256').update(s).digest('hex');

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial schema',
    sql: `
      CREATE TABLE workers (
        id            TEXT PRIMARY KEY,
        labels        TEXT NOT NULL,
        key_hash      TEXT NOT NULL UNIQUE,
        created_at    INTEGER NOT NULL,
        last_seen_at  INTEGER,
        slots_total   INTEGER,
        draining      INTEGER NOT NULL DEFAULT 0,
        offline       INTEGER NOT NULL DEFAULT 0
      );
      CREATE TABLE builds (
        seq               INTEGER PRIMARY KEY AUTOINCREMENT,
        id                TEXT NOT NULL UNIQUE,
        status            TEXT NOT NULL,
        steps             TEXT NOT NULL,
        env               TEXT NOT NULL,
        labels            TEXT NOT NULL,
        timeout_s         INTEGER NOT NULL,
        max_attempts      INTEGER NOT NULL,
        attempt           INTEGER NOT NULL DEFAULT 0,
        worker_id         TEXT REFERENCES workers(id),
        lease             TEXT,
        progress          INTEGER,
        failure_reason    TEXT,
        message           TEXT,
        exit_code         INTEGER,
        cancel_requested  INTEGER NOT NULL DEFAULT 0,
        log_bytes         INTEGER NOT NULL DEFAULT 0,
        created_at        INTEGER NOT NULL,
        assigned_at       INTEGER,
        started_at        INTEGER,
        finished_at       INTEGER,
        last_heartbeat_at INTEGER
      );
      CREATE INDEX builds_status_seq ON builds(status, seq);
      CREATE INDEX builds_worker_status ON builds(worker_id, status);
      CREATE INDEX builds_status_heartbeat ON builds(status, last_heartbeat_at);
      CREATE TABLE attempts (
        build_id          TEXT NOT NULL REFERENCES builds(id),
        attempt           INTEGER NOT NULL,
        worker_id         TEXT NOT NULL REFERENCES workers(id),
        lease             TEXT NOT NULL UNIQUE,
        build_token_hash  TEXT NOT NULL UNIQUE,
        claimed_at        INTEGER NOT NULL,
        ended_at          INTEGER,
        outcome           TEXT,
        failure_reason    TEXT,
        exit_code         INTEGER,
        message           TEXT,
        log_offset        INTEGER NOT NULL,
        PRIMARY KEY (build_id, attempt)
      );
      CREATE TABLE log_chunks (
        build_id  TEXT NOT NULL REFERENCES builds(id),
        offset    INTEGER NOT NULL,
        data      BLOB NOT NULL,
        PRIMARY KEY (build_id, offset)
      );
    `,
  },
  {
    version: 2,
    name: 'artifacts',
    sql: `
      ALTER TABLE builds ADD COLUMN artifacts TEXT NOT NULL DEFAULT '[]';
      CREATE TABLE artifacts (
        build_id    TEXT NOT NULL REFERENCES builds(id),
        name        TEXT NOT NULL,
        attempt     INTEGER NOT NULL,
        size_bytes  INTEGER NOT NULL,
        sha256      TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        PRIMARY KEY (build_id, name)
      );
    `,
  },
  {
    version: 3,
    name: 'attempt running time',
    // When this attempt started its steps: the controller's backstop for `timeoutS` counts from
    // here (builds.started_at is the first attempt's start and stays for the record).
    sql: `ALTER TABLE attempts ADD COLUMN running_at INTEGER;`,
  },
  {
    version: 4,
    name: 'leases stored hashed',
    // Leases become SHA-256 digests like worker keys and build tokens: a copy of the database
    // no longer lets anyone act as a running attempt. The agents keep their plain leases, and
    // the controller hashes what they present, so running builds carry on across the upgrade.
    sql: '',
    up: (db) => {
      const builds = db.prepare('SELECT id, lease FROM builds WHERE lease IS NOT NULL').all() as { id: string; lease: string }[];
      const setBuild = db.prepare('UPDATE builds SET lease = ? WHERE id = ?');
      for (const b of builds) setBuild.run(sha256Hex(b.lease), b.id);
      const attempts = db.prepare('SELECT build_id, attempt, lease FROM attempts').all() as { build_id: string; attempt: number; lease: string }[];
      const setAttempt = db.prepare('UPDATE attempts SET lease = ? WHERE build_id = ? AND attempt = ?');
      for (const a of attempts) setAttempt.run(sha256Hex(a.lease), a.build_id, a.attempt);
    },
  },
  {
    version: 5,
    name: 'secret env',
    // The values sealed (AES-256-GCM, key in the data dir) while the build may still run, NULL
    // once it is final; the names stay for the record.
    sql: `
      ALTER TABLE builds ADD COLUMN secret_env BLOB;
      ALTER TABLE builds ADD COLUMN secret_env_names TEXT NOT NULL DEFAULT '[]';
    `,
  },
  {
    version: 6,
    name: 'artifact problems',
    // Declared artifacts an attempt could not store (matched nothing, failed to upload), as JSON.
    sql: `ALTER TABLE builds ADD COLUMN artifact_problems TEXT NOT NULL DEFAULT '[]';`,
  },
  {
    version: 7,
    name: 'github webhook deliveries',
    // One row per accepted delivery, keyed by GitHub's delivery GUID so a redelivery is a no-op;
    // the payload itself is never stored. Pruned by received_at with the builds.
    sql: `
      CREATE TABLE webhook_deliveries (
        id           TEXT PRIMARY KEY,
        event        TEXT NOT NULL,
        action       TEXT,
        repository   TEXT,
        received_at  INTEGER NOT NULL,
        outcome      TEXT NOT NULL,
        reason       TEXT NOT NULL
      );
      CREATE INDEX webhook_deliveries_received ON webhook_deliveries(received_at);
    `,
  },
  {
    version: 8,
    name: 'github projects and build sources',
    // Projects (one per repository, matched without regard to case through repo_key), their
    // secrets sealed, and where each build came from: the source as JSON for the record, and
    // its repo (lower case), ref, sha and project as indexed columns for the filters and for
    // supersession. `cancel_message` is a message set with a cancel (`superseded by <sha>`)
    // that the build's cancelled end keeps. Deliveries keep what they ask to build (`work`)
    // until settled, and the builds they made; old rows were all `ignored` and stay so.
    sql: `
      CREATE TABLE projects (
        id             TEXT PRIMARY KEY,
        repo           TEXT NOT NULL,
        repo_key       TEXT NOT NULL UNIQUE,
        pipeline_path  TEXT NOT NULL,
        supersede      INTEGER NOT NULL,
        created_at     INTEGER NOT NULL
      );
      CREATE TABLE project_secrets (
        project_id  TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        name        TEXT NOT NULL,
        sealed      BLOB NOT NULL,
        updated_at  INTEGER NOT NULL,
        PRIMARY KEY (project_id, name)
      );
      ALTER TABLE builds ADD COLUMN source TEXT;
      ALTER TABLE builds ADD COLUMN source_project TEXT;
      ALTER TABLE builds ADD COLUMN source_repo_key TEXT;
      ALTER TABLE builds ADD COLUMN source_ref TEXT;
      ALTER TABLE builds ADD COLUMN source_sha TEXT;
      ALTER TABLE builds ADD COLUMN reported TEXT;
      ALTER TABLE builds ADD COLUMN check_run_id INTEGER;
      ALTER TABLE builds ADD COLUMN cancel_message TEXT;
      CREATE INDEX builds_source_repo ON builds(source_repo_key, seq) WHERE source_repo_key IS NOT NULL;
      CREATE INDEX builds_source_sha ON builds(source_sha, seq) WHERE source_sha IS NOT NULL;
      CREATE INDEX builds_source_ref ON builds(source_ref, seq) WHERE source_ref IS NOT NULL;
      CREATE INDEX builds_source_project_ref ON builds(source_project, source_ref) WHERE source_project IS NOT NULL;
      CREATE INDEX builds_to_report ON builds(seq) WHERE source IS NOT NULL AND coalesce(reported, '') <> 'final';
      ALTER TABLE webhook_deliveries ADD COLUMN work TEXT;
      ALTER TABLE webhook_deliveries ADD COLUMN builds TEXT NOT NULL DEFAULT '[]';
      CREATE INDEX webhook_deliveries_pending ON webhook_deliveries(received_at, id) WHERE outcome = 'pending';
    `,
  },
  {
    version: 9,
    name: 'users, sessions, API tokens, audit log; drain from the controller',
    // People and scripts (docs/access.md): users with a role and a scrypt password hash; their
    // dashboard sessions and API tokens, each stored only as the SHA-256 of its secret (the
    // secrets are 256-bit random); the audit log, append-only. A user's sessions and tokens go
    // with the user (a token made with the admin key has no owner; its `admin_epoch` ties it to
    // that key, so rotating the key ends it). `drain_requested` is an
    // operator's drain of a worker, kept apart from the agent's own `draining`. `step_starts`:
    // when each step of the current attempt started (a JSON array of ms, null until the agent
    // reports one; emptied with each claim), for the build page's step durations.
    sql: `
      CREATE TABLE users (
        name             TEXT PRIMARY KEY,
        role             TEXT NOT NULL,
        password_hash    TEXT NOT NULL,
        created_at       INTEGER NOT NULL,
        last_sign_in_at  INTEGER
      );
      CREATE TABLE sessions (
        id_hash     TEXT PRIMARY KEY,
        user_name   TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        created_at  INTEGER NOT NULL,
        expires_at  INTEGER NOT NULL
      );
      CREATE INDEX sessions_user ON sessions(user_name);
      CREATE TABLE api_tokens (
        id            TEXT PRIMARY KEY,
        name          TEXT NOT NULL,
        role          TEXT NOT NULL,
        owner         TEXT REFERENCES users(name) ON DELETE CASCADE,
        secret_hash   TEXT NOT NULL UNIQUE,
        created_at    INTEGER NOT NULL,
        expires_at    INTEGER NOT NULL,
        last_used_at  INTEGER,
        revoked_at    INTEGER,
        admin_epoch   TEXT
      );
      CREATE INDEX api_tokens_owner ON api_tokens(owner, created_at);
      CREATE TABLE audit_log (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        at      INTEGER NOT NULL,
        actor   TEXT NOT NULL,
        action  TEXT NOT NULL,
        target  TEXT NOT NULL,
        detail  TEXT
      );
      CREATE INDEX audit_log_action ON audit_log(action, id);
      ALTER TABLE workers ADD COLUMN drain_requested INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE builds ADD COLUMN step_starts TEXT;
      CREATE INDEX builds_finished_at ON builds(finished_at) WHERE finished_at IS NOT NULL;
      CREATE INDEX attempts_claimed_at ON attempts(claimed_at);
    `,
  },
];
