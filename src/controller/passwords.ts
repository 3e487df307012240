/**
 * Password hashing for dashboard users: scrypt (RFC 7914) from node:crypto, run off the main
 * thread (the async form uses libuv's pool). A stored hash names its own parameters
 * (`scrypt$<log2 N>$<r>$<p>$<salt, base64>$<key, base64>`), so raising the cost later leaves
 * the old hashes valid; each is checked with the parameters it was made with.
 */
import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';

/** scrypt's cost as log2 N by default: 17, OWASP's minimum for scrypt with r = 8, p = 1. */
export const DEFAULT_PASSWORD_COST_LOG2 = 17;
const R = 8;
const P = 1;
const SALT_BYTES = 16;
const KEY_BYTES = 32;
/** The costs a stored hash may name: below is too weak to trust, above would let a bad row stall the controller. */
const MIN_COST_LOG2 = 10;
const MAX_COST_LOG2 = 22;

const scryptAsync = (password: string, salt: Buffer, keyBytes: number, o: ScryptOptions): Promise<Buffer> =>
  new Promise((resolve, reject) => scrypt(password, salt, keyBytes, o, (err, key) => (err ? reject(err) : resolve(key))));

/** scrypt needs 128·N·r bytes; node's default cap (32 MiB) is below that at N = 2^17. */
const options = (costLog2: number, r: number, p: number): ScryptOptions => ({ N: 2 ** costLog2, r, p, maxmem: 256 * 2 ** costLog2 * r });

/** The stored form of `password`, with a fresh 16-byte salt. */
export async function hashPassword(password: string, costLog2: number = DEFAULT_PASSWORD_COST_LOG2): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const key = await scryptAsync(password, salt, KEY_BYTES, options(costLog2, R, P));
  return `scrypt$${costLog2}$${R}$${P}$${salt.toString('base64')}$${key.toString('base64')}`;
}

/** Whether `password` is the one `stored` was made from (false for a malformed `stored`); compared in constant time. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const m = /^scrypt\$(\d{1,2})\$(\d{1,2})\$(\d{1,2})\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$/.exec(stored);
  if (!m) return false;
  const [costLog2, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (costLog2 < MIN_COST_LOG2 || costLog2 > MAX_COST_LOG2 || r < 1 || r > 32 || p < 1 || p > 16) return false;
  const salt = Buffer.from(m[4]!, 'base64');
  const expected = Buffer.from(m[5]!, 'base64');
  if (expected.length < 16 || expected.length > 64) return false;
  const key = await scryptAsync(password, salt, expected.length, options(costLog2, r, p));
  return timingSafeEqual(key, expected);
}

/** A well-formed stored hash of this cost whose key is random bytes: checking it costs one scrypt, and no password matches it. */
export const unmatchableHash = (costLog2: number): string =>
  `scrypt$${costLog2}$${R}$${P}$${randomBytes(SALT_BYTES).toString('base64')}$${randomBytes(KEY_BYTES).toString('base64')}`;

/** A password the controller makes: 24 characters of base64url (144 random bits), shown once. */
export const newPassword = (): string => randomBytes(18).toString('base64url');
