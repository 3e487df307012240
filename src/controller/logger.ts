/** The controller's pino logger, with every secret the API carries redacted. */
import pino, { type DestinationStream, type Logger } from 'pino';

export const REDACT_PATHS = [
  'req.headers.authorization',
  'headers.authorization',
  'apiKey',
  '*.apiKey',
  'buildToken',
  '*.buildToken',
  'lease',
  '*.lease',
  'env',
  '*.env',
];

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino({ level, redact: { paths: REDACT_PATHS, censor: '[redacted]' }, base: { service: 'expo-worker-controller' } }, destination);
}
