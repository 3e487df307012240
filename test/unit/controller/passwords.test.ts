/** Password hashing (src/controller/passwords.ts): scrypt with its parameters in the stored form, checked in constant time. */
import { describe, expect, it } from 'vitest';
import { hashPassword, newPassword, unmatchableHash, verifyPassword } from '../../../src/controller/passwords.ts';

describe('passwords', () => {
  it('verifies the password a hash was made from, and no other', async () => {
    const stored = await hashPassword('correct horse battery', 11);
    expect(stored).toMatch(/^scrypt\$11\$8\$1\$[A-Za-z0-9+/=]{24}\$[A-Za-z0-9+/=]{44}$/);
    expect(await verifyPassword('correct horse battery', stored)).toBe(true);
    expect(await verifyPassword('correct horse batterY', stored)).toBe(false);
    expect(await verifyPassword('', stored)).toBe(false);
    // A fresh salt each time.
    expect(await hashPassword('correct horse battery', 11)).not.toBe(stored);
  });

  it('checks a hash with the parameters it names, so a raised cost leaves old hashes valid', async () => {
    const cheap = await hashPassword('an older password', 10);
    expect(await verifyPassword('an older password', cheap)).toBe(true);
    // The default cost (17) needs more than node's default scrypt memory cap: `maxmem` is set.
    const strong = await hashPassword('a newer password');
    expect(strong.startsWith('scrypt$17$8$1$')).toBe(true);
    expect(await verifyPassword('a newer password', strong)).toBe(true);
  });

  it('refuses malformed or out-of-range stored forms without hashing anything', async () => {
    const good = await hashPassword('pw pw pw pw pw', 10);
    const [, , r, p, salt, key] = good.split('$');
    for (const bad of ['', 'plain text', `bcrypt$10$${r}$${p}$${salt}$${key}`, `scrypt$30$${r}$${p}$${salt}$${key}`, `scrypt$4$${r}$${p}$${salt}$${key}`, `scrypt$10$${r}$${p}$${salt}$AAAA`]) {
      expect(await verifyPassword('pw pw pw pw pw', bad), bad).toBe(false);
    }
  });

  it('an unmatchable hash matches nothing; made-up passwords are 24 base64url characters', async () => {
    expect(await verifyPassword('', unmatchableHash(10))).toBe(false);
    expect(await verifyPassword('anything at all', unmatchableHash(10))).toBe(false);
    const made = new Set(Array.from({ length: 50 }, newPassword));
    expect(made.size).toBe(50);
    for (const p of made) expect(p).toMatch(/^[A-Za-z0-9_-]{24}$/);
  });
});
