/**
 * Artifact bytes on disk, beside the database: `<dir>/<buildId>/<attempt>/<name>` — an attempt
 * that lost its lease can never overwrite a later attempt's file. A file is streamed to a
 * temporary name while its SHA-256 is computed and its size checked against the cap, then
 * renamed into place — a reader never sees half a file, and an upload that fails or exceeds the
 * cap leaves nothing behind. Re-uploading a name replaces it (the agent retries uploads).
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ExpoError } from '../protocol/errors.ts';

export class ArtifactFiles {
  private readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  private path(buildId: string, attempt: number, name: string): string {
    return join(this.dir, buildId, String(attempt), name);
  }

  async write(buildId: string, attempt: number, name: string, body: Readable, maxBytes: number): Promise<{ sizeBytes: number; sha256: string }> {
    await mkdir(join(this.dir, buildId, String(attempt)), { recursive: true });
    const final = this.path(buildId, attempt, name);
    const temp = `${final}.${randomBytes(6).toString('hex')}.partial`;
    const hash = createHash('sha256');
    let size = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        size += chunk.length;
        if (size > maxBytes) return done(new ExpoError('API_BODY_TOO_LARGE', `artifact ${name} is larger than the cap of ${maxBytes} bytes`));
        hash.update(chunk);
        done(null, chunk);
      },
    });
    try {
      await pipeline(body, meter, createWriteStream(temp, { mode: 0o640 }));
      await rename(temp, final);
    } catch (err) {
      await rm(temp, { force: true });
      throw err;
    }
    return { sizeBytes: size, sha256: hash.digest('hex') };
  }

  async remove(buildId: string, attempt: number, name: string): Promise<void> {
    await rm(this.path(buildId, attempt, name), { force: true });
  }

  async open(buildId: string, attempt: number, name: string): Promise<{ stream: Readable; sizeBytes: number } | null> {
    const path = this.path(buildId, attempt, name);
    try {
      const s = await stat(path);
      return { stream: createReadStream(path), sizeBytes: s.size };
    } catch {
      return null;
    }
  }
}
