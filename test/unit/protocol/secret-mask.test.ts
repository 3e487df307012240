import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LogStream } from '../../../src/agent/log-stream.ts';
import { MIN_SECRET_CHARS, SecretMasker, maskSameLength, secretNeedles } from '../../../src/protocol/secret-mask.ts';

/** Feeds `text` to a masker cut at every position in `cuts`, and returns all it let out. */
function masked(values: string[], pieces: string[]): string {
  const m = new SecretMasker(values);
  return pieces.map((p) => m.push(p)).join('') + m.end();
}

describe('secret masking', () => {
  it('masks a value added later (a clone token fetched mid-attempt) from then on, what it holds back included', () => {
    const m = new SecretMasker(['s3cret-env']);
    // Held back: it could be the start of the env secret.
    expect(m.push('before s3cret')).toBe('before ');
    m.add(['ghs_token123']);
    expect(m.push('-env, ghs_token123, ghs_tok')).toBe('***, ***, ');
    expect(m.push('en123\n') + m.end()).toBe('***\n');
  });

  it('masks every occurrence as ***', () => {
    expect(masked(['hunter22'], ['pw=hunter22 and again hunter22\n'])).toBe('pw=*** and again ***\n');
  });

  it('a secret split across two chunks is still masked, wherever the cut falls', () => {
    const secret = 'sk_live_0123456789';
    const text = `before ${secret} after\n`;
    for (let cut = 0; cut <= text.length; cut++) {
      expect(masked([secret], [text.slice(0, cut), text.slice(cut)])).toBe('before *** after\n');
    }
  });

  it('a secret split across many one-character chunks is masked', () => {
    const secret = 'abcdefgh';
    expect(masked([secret], [...`x${secret}y${secret}`])).toBe('x***y***');
  });

  it('holds back only what could be the start of a secret, and lets it out at the end', () => {
    const m = new SecretMasker(['supersecret']);
    expect(m.push('line one\nsupe')).toBe('line one\n');
    expect(m.end()).toBe('supe');
  });

  it('a secret that is the start of a longer one is masked both ways', () => {
    expect(masked(['abcd1234', 'abcd1234wxyz'], ['abcd1234', 'wxyz abcd', '1234.'])).toBe('*** ***.');
  });

  it('masks each line of a multi-line value on its own', () => {
    const key = '-----BEGIN KEY-----\nMIIBOgIBAAJBAK\n-----END KEY-----';
    expect(masked([key], [`${key}\n`])).toBe('***\n');
    expect(masked([key], ['got MIIBOgIBAAJBAK in the output\n'])).toBe('got *** in the output\n');
  });

  it(`does not mask values shorter than ${MIN_SECRET_CHARS} characters`, () => {
    expect(secretNeedles(['yes', 'abc\nlonger-line'])).toEqual(['abc\nlonger-line', 'longer-line']);
    expect(masked(['yes'], ['yes yes\n'])).toBe('yes yes\n');
  });

  it('the controller masks with as many stars as the value has bytes, so offsets stay true', () => {
    const out = maskSameLength('a pässwörd b', secretNeedles(['pässwörd']));
    expect(out).toBe(`a ${'*'.repeat(Buffer.byteLength('pässwörd'))} b`);
    expect(Buffer.byteLength(out)).toBe(Buffer.byteLength('a pässwörd b'));
  });
});

describe('LogStream with secret values', () => {
  it('a secret split across two appends never reaches the controller or the local file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'expo-mask-'));
    try {
      const sent: string[] = [];
      const path = join(dir, 'a.log');
      let size = 0;
      const s = new LogStream({
        path,
        startOffset: 0,
        flushIntervalMs: 10_000,
        secretValues: ['tok_9f8e7d6c5b4a'],
        send: async (_offset, data) => {
          sent.push(data);
          size += Buffer.byteLength(data);
          return size;
        },
      });
      s.append('token is tok_9f8e');
      await s.flush();
      expect(readFileSync(path, 'utf8')).not.toContain('tok_9f8e');
      s.append('7d6c5b4a, done\n');
      await s.flush();
      expect(readFileSync(path, 'utf8')).toBe('token is ***, done\n');
      s.append('ends with tok_9f');
      expect(await s.close(Date.now() + 5000)).toBe(true);
      expect(sent.join('')).toBe('token is ***, done\nends with tok_9f');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
