/**
 * `expo-worker controller`: the composition root. Reads the configuration, opens the store,
 * builds the app, listens, starts the watchdog, and owns the signal handlers: SIGTERM or SIGINT
 * stop accepting, answer open long-polls with 204, finish in-flight requests and close the
 * database; a second signal exits at once.
 */
import { dirname, join, resolve } from 'node:path';
import { isExpoError } from '../protocol/errors.ts';
import { buildApp } from './app.ts';
import { CONTROLLER_HELP, parseControllerArgs } from './config.ts';
import { createLogger, logDestination, resolveLogFormat } from '../sys/logger.ts';
import { takeOverSignals } from '../sys/signals.ts';
import { createGithubApi } from '../github/client.ts';
import { SqliteStore } from './store/sqlite-store.ts';
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
  let secrets: SecretBox;
  if (config.dbPath === ':memory:') secrets = SecretBox.ephemeral();
  else {
    // The data directory is private: 0700, its files 0600 (narrowed at start when wider).
    const dataDir = prepareDataDir(config.dbPath);
    for (const fixed of dataDir.fixed) logger.warn({ fixed }, `narrowed a file mode in the data directory: ${fixed}`);
    for (const warning of dataDir.warnings) logger.warn({ warning }, warning);
    const keyFile = join(dirname(resolve(config.dbPath)), 'secret-env.key');
    secrets = SecretBox.fromKeyFile(keyFile, (fixed) => logger.warn({ fixed }, `narrowed a file mode in the data directory: ${fixed}`));
  }
  const store = new SqliteStore({ path: config.dbPath });
  await store.migrate();
  const controller = await buildApp({
    store,
    adminKey: config.apiKey,
    heartbeatTimeoutMs: config.heartbeatTimeoutMs,
    maxLogBytes: config.maxLogBytes,
    artifactsDir: config.artifactsDir,
    ...(config.artifactsS3 === null ? {} : { artifacts: new S3Artifacts({ location: config.artifactsS3 }) }),
    maxArtifactBytes: config.maxArtifactBytes,
    defaultBuildTimeoutS: config.defaultBuildTimeoutS,
    prepareTimeoutMs: config.prepareTimeoutMs,
    logger,
    startedAt,
    secrets,
    retentionDays: config.retentionDays,
    dataDir: config.dbPath === ':memory:' ? undefined : dirname(resolve(config.dbPath)),
    ...(config.githubSecret === null ? {} : { githubSecret: config.githubSecret }),
    github: createGithubApi(config),
    githubWebUrl: config.githubWebUrl,
    publicUrl: config.publicUrl,
    trustProxy: config.trustProxy,
  });
  // Nothing can be uploading into our directory yet: every .partial file is a leftover of a
  // cut-short upload. A bucket may be shared with other controllers, uploading right now.
  const partials = await controller.retention.removeAbandoned(config.artifactsS3 === null ? 0 : controller.retention.abandonedMaxAgeMs);
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
  controller.watchdog.start();
  controller.retention.start(config.retentionSchedule);
  logger.info(
    { address, db: config.dbPath, retentionDays: config.retentionDays, heartbeatTimeoutS: config.heartbeatTimeoutMs / 1000, prepareTimeoutS: config.prepareTimeoutMs / 1000, githubWebhook: config.githubSecret !== null },
    `controller listening on ${address}`,
  );
  return stopped;
}
