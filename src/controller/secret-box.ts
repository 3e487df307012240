/**
 * Seals a build's secret env values for the time they sit in the store (queued, running,
 * waiting for a retry): AES-256-GCM with a random 96-bit IV per seal and the build id as
 * associated data, so a sealed value cannot be moved to another build. The 256-bit key lives in
 * a file in the data directory (created 0600 on first start, `secret-env.key`); a copy of the
 * database alone reveals nothing. The values are erased from the store when the build is final.
 *
 * Sealed layout: version byte (1) ‖ IV (12) ‖ ciphertext ‖ tag (16).
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { closeSync, constants, openSync, readFileSync, statSync, chmodSync, writeSync } from 'node:fs';
import { ExpoError } from '../protocol/errors.ts';

const VERSION = 1;
const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** What the fingerprint is an HMAC of: fixed, so equal keys give equal fingerprints. */
const FINGERPRINT_LABEL = 'expo-worker secret-env key fingerprint v1';

export class SecretBox {
  private readonly key: Buffer;

  private constructor(key: Buffer) {
    this.key = key;
  }

  /** A box with a key that lives only in this process (tests, `:memory:` databases). */
  static ephemeral(): SecretBox {
    return new SecretBox(randomBytes(KEY_BYTES));
  }

  /**
   * The box of the key in `path`, created (0600, exclusively — two starting controllers cannot
   * both write one) when missing. A key file readable by others is narrowed to 0600; `onFix`
   * hears of it.
   */
  static fromKeyFile(path: string, onFix?: (what: string) => void): SecretBox {
    try {
      const fd = openSync(path, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o600);
      try {
        writeSync(fd, randomBytes(KEY_BYTES).toString('base64') + '\n');
      } finally {
        closeSync(fd);
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new ExpoError('CFG_INVALID', `cannot create the secret-env key ${path}: ${(err as Error).message}`, { cause: err });
      }
    }
    const mode = statSync(path).mode;
    if ((mode & 0o077) !== 0) {
      chmodSync(path, 0o600);
      onFix?.(`${path}: ${(mode & 0o777).toString(8).padStart(4, '0')} → 0600`);
    }
    const key = Buffer.from(readFileSync(path, 'utf8').trim(), 'base64');
    if (key.length !== KEY_BYTES) throw new ExpoError('CFG_INVALID', `the secret-env key ${path} is not ${KEY_BYTES} bytes of base64; restore it or remove it (queued builds' secrets are then lost)`);
    return new SecretBox(key);
  }

  /**
   * A fingerprint of the key (hex HMAC-SHA256 of a fixed label under it), for controllers sharing a
   * database to check that they hold the same key. It reveals nothing of the key itself.
   */
  fingerprint(): string {
    return createHmac('sha256', this.key).update(FINGERPRINT_LABEL).digest('hex');
  }

  seal(buildId: string, values: Record<string, string>): Buffer {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    cipher.setAAD(Buffer.from(buildId));
    const body = Buffer.concat([cipher.update(JSON.stringify(values), 'utf8'), cipher.final()]);
    return Buffer.concat([Buffer.from([VERSION]), iv, body, cipher.getAuthTag()]);
  }

  open(buildId: string, sealed: Buffer): Record<string, string> {
    if (sealed.length < 1 + IV_BYTES + TAG_BYTES || sealed[0] !== VERSION) throw new ExpoError('STORE_FAILED', `the secret env of build ${buildId} is not in a known format`);
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.key, sealed.subarray(1, 1 + IV_BYTES));
      decipher.setAAD(Buffer.from(buildId));
      decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
      const plain = Buffer.concat([decipher.update(sealed.subarray(1 + IV_BYTES, sealed.length - TAG_BYTES)), decipher.final()]);
      return JSON.parse(plain.toString('utf8')) as Record<string, string>;
    } catch (cause) {
      throw new ExpoError('STORE_FAILED', `the secret env of build ${buildId} cannot be opened with this controller's key (was secret-env.key replaced?)`, { cause });
    }
  }
}
