/**
 * `expo-worker controller`: the composition root. Reads the configuration, opens the store
 * (SQLite, or PostgreSQL for `--db postgres://…`) and its cluster (alone, or the controllers
 * sharing that PostgreSQL database), builds the app, listens, takes part in the cluster (the
 * leader runs the watchdog and the scheduled jobs), and owns the signal handlers: SIGTERM or
 * SIGINT stop accepting, give up the lead, answer open long-polls with 204, finish in-flight
 * requests and close the database; a second signal exits at once.
 */
import { dirname, join, resolve } from 'node:path';
import { isExpoError } from '../protocol/errors.ts';
import { buildApp } from './app.ts';
import { CONTROLLER_HELP, parseControllerArgs } from './config.ts';
import { createLogger, logDestination, resolveLogFormat } from '../sys/logger.ts';
import { takeOverSignals } from '../sys/signals.ts';
import { createGithubApi } from '../github/client.ts';
import { SqliteStore } from './store/sqlite-store.ts';
import { PgStore } from './store/pg-store.ts';
import { PgCluster } from './store/pg-cluster.ts';
import { maxClockSkewMs } from '../monitor/watchdog-policy.ts';
import { redactDbUrl } from './store/db-url.ts';
import { agreeOnSecretKey } from './store/pg-settings.ts';
import { LocalCluster, type Cluster } from './cluster.ts';
import type { Store } from './store/store.ts';
import { prepareDataDir } from './store/data-dir.ts';
import { SecretBox } from './secret-box.ts';
import { S3Artifacts } from './s3-artifacts.ts';

export async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseControllerArgs(argv, process.env);
  } catch (err) {
    if (isExpoError(err, 'CFG_INVALID')) {
      console.error(`expo-worker controller: ${err.message}`);
      return 64;
    }
    throw err;
  }
  if (parsed.help) {
    console.log(CONTROLLER_HELP);
    return 0;
  }
  const config = parsed.config;
  const logger = createLogger('expo-worker-controller', config.logLevel, await logDestination(resolveLogFormat(config.logFormat, process.stdout.isTTY === true)));
  for (const warning of config.startupWarnings) logger.warn({ warning }, warning);
  const startedAt = Date.now();
  let secrets: SecretBox | null = null;
  let keyFile = '';
  let loadKey = (): SecretBox => SecretBox.ephemeral();
  if (config.dbUrl === null && config.dbPath === ':memory:') secrets = SecretBox.ephemeral();
  else {
    // The data directory is private: 0700, its files 0600 (narrowed at start when wider). With
    // PostgreSQL it holds no database, only secret-env.key (the same on every controller).
    const dataDir = prepareDataDir(config.dbUrl === null ? config.dbPath : join(config.dataDir, 'controller.db'));
    for (const fixed of dataDir.fixed) logger.warn({ fixed }, `narrowed a file mode in the data directory: ${fixed}`);
    for (const warning of dataDir.warnings) logger.warn({ warning }, warning);
    keyFile = join(config.dataDir, 'secret-env.key');
    loadKey = () => SecretBox.fromKeyFile(keyFile, (fixed) => logger.warn({ fixed }, `narrowed a file mode in the data directory: ${fixed}`));
    // With PostgreSQL the key is loaded once the database can say which key its controllers use.
    if (config.dbUrl === null) secrets = loadKey();
  }
  let store: Store;
  let cluster: Cluster;
  let storeUnavailableAt: (() => number) | undefined;
  if (config.dbUrl !== null) {
    const pgStore = new PgStore({ url: config.dbUrl });
    store = pgStore;
    storeUnavailableAt = () => pgStore.db.lastUnavailableAt;
    cluster = new PgCluster({ db: pgStore.db, url: config.dbUrl, logger, maxSkewMs: maxClockSkewMs(config.heartbeatTimeoutMs) });
    if (config.artifactsS3 === null) {
      logger.warn(
        { artifactsDir: config.artifactsDir },
        'PostgreSQL with a local artifact directory: every controller on this database needs the same artifacts — give them shared storage (--artifacts s3://…) before running more than one',
      );
    }
  } else {
    store = new SqliteStore({ path: config.dbPath });
    cluster = new LocalCluster();
  }
  await store.migrate();
  if (secrets === null && store instanceof PgStore) {
    try {
      secrets = await agreeOnSecretKey(store.db, keyFile, loadKey);
    } catch (err) {
      await store.close();
      if (isExpoError(err, 'CFG_INVALID')) {
        console.error(`expo-worker controller: ${err.message}`);
        return 64;
      }
      throw err;
    }
  }
  if (secrets === null) throw new Error('no secret-env key was loaded');
  const s3 = config.artifactsS3 === null ? null : new S3Artifacts({ location: config.artifactsS3 });
  const controller = await buildApp({
    store,
    adminKey: config.apiKey,
    heartbeatTimeoutMs: config.heartbeatTimeoutMs,
    maxLogBytes: config.maxLogBytes,
    artifactsDir: config.artifactsDir,
    ...(s3 === null ? {} : { artifacts: s3 }),
    maxArtifactBytes: config.maxArtifactBytes,
    defaultBuildTimeoutS: config.defaultBuildTimeoutS,
    prepareTimeoutMs: config.prepareTimeoutMs,
    logger,
    startedAt,
    ...(storeUnavailableAt ? { storeUnavailableAt } : {}),
    secrets,
    retentionDays: config.retentionDays,
    dataDir: config.dbUrl !== null ? config.dataDir : config.dbPath === ':memory:' ? undefined : dirname(resolve(config.dbPath)),
    ...(config.githubSecret === null ? {} : { githubSecret: config.githubSecret }),
    github: createGithubApi(config),
    githubWebUrl: config.githubWebUrl,
    publicUrl: config.publicUrl,
    trustProxy: config.trustProxy,
    cluster,
    retentionSchedule: config.retentionSchedule,
  });
  // Alone on its own directory nothing can be uploading yet; a bucket, or a directory another
  // controller on the same PostgreSQL database may share (NFS), may hold uploads in progress.
  const partials = await controller.retention.removeAbandoned(config.artifactsS3 === null && config.dbUrl === null ? 0 : controller.retention.abandonedMaxAgeMs);
  if (partials.files > 0) logger.info(partials, 'removed .partial artifact files left by interrupted uploads');
  const address = await controller.app.listen({ port: config.port, host: config.host });
  // The signals are ours before the first line that tells anyone we are up: a SIGTERM sent the
  // moment "listening" is read must drain, not meet the default action and kill the process.
  const stopped = new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) {
        logger.warn({ signal }, 'second signal: exiting now');
        process.exit(130);
      }
      stopping = true;
      logger.info({ signal }, 'stopping: answering open polls, finishing requests');
      controller
        .shutdown()
        .then(() => store.close())
        .then(() => s3?.close())
        .then(
          () => {
            logger.info('controller stopped');
            resolve(0);
          },
          (err: unknown) => {
            logger.error({ err }, 'shutdown failed');
            resolve(1);
          },
        );
    };
    takeOverSignals(['SIGTERM', 'SIGINT', 'SIGHUP']);
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
  // The watchdog and the scheduled jobs start when this controller leads (a lone one at once).
  await controller.startCluster();
  logger.info(
    { address, db: config.dbUrl === null ? config.dbPath : redactDbUrl(config.dbUrl), clusterId: cluster.id, retentionDays: config.retentionDays, heartbeatTimeoutS: config.heartbeatTimeoutMs / 1000, prepareTimeoutS: config.prepareTimeoutMs / 1000, githubWebhook: config.githubSecret !== null },
    `controller listening on ${address}`,
  );
  return stopped;
}
