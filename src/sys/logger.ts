/**
 * The pino logger both processes use, with every secret the system handles redacted wherever it
 * appears in a logged object: keys, build tokens, leases, build env and secret env,
 * Authorization headers.
 */
import pino, { type DestinationStream, type Logger } from 'pino';

export const REDACT_PATHS = [
  'req.headers.authorization',
  'headers.authorization',
  'authorization',
  'apiKey',
  '*.apiKey',
  'buildToken',
  '*.buildToken',
  'lease',
  '*.lease',
  'env',
  '*.env',
  'secretEnv',
  '*.secretEnv',
  'build.secretEnv',
  'claim.build.secretEnv',
  'privateKey',
  '*.privateKey',
];

export function createLogger(service: string, level: string, destination?: DestinationStream): Logger {
  return pino({ level, redact: { paths: REDACT_PATHS, censor: '[redacted]' }, base: { service } }, destination);
}
