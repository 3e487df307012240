/**
 * Artifact bytes on disk, beside the database: `<dir>/<buildId>/<attempt>/<sha256 of the name>`
 * — an attempt that lost its lease can never overwrite a later attempt's file. The name (a
 * relative path such as `ios/build/App.ipa`, validated by the route) never becomes a path on
 * disk: its hash does, so no name can reach outside the directory, two names can never share a
 * file, and a long or odd name never meets a file system's limits. A file is streamed to a
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
    return join(this.dir, buildId, String(attempt), createHash('sha256').update(name, 'utf8').digest('hex'));
  }

  /**
   * Where controllers before relative artifact names kept a file: under its base name, which
   * was then the whole name (letters, digits, `._-`, no leading dot) — read so that old builds'
   * artifacts stay downloadable.
   */
  private legacyPath(buildId: string, attempt: number, name: string): string | null {
    return /^(?!\.)[A-Za-z0-9._-]{1,200}$/.test(name) ? join(this.dir, buildId, String(attempt), name) : null;
  }

  /**
   * Streams `body` into place. Throws 413 past `maxBytes`; ENOENT when the build's folder is
   * removed under the upload (the route asks whether the build was pruned); a full disk's ENOSPC
   * names the file, so the answer can say the artifact directory, not the database, is full.
   */
  async write(buildId: string, attempt: number, name: string, body: Readable, maxBytes: number): Promise<{ sizeBytes: number; sha256: string }> {
    try {
      return await this.writeFile(buildId, attempt, name, body, maxBytes);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      // fs write errors carry no path: the temporary file is where the write failed.
      if (e.code === 'ENOSPC' && e.path === undefined) e.path = join(this.dir, buildId);
      throw err;
    }
  }

  private async writeFile(buildId: string, attempt: number, name: string, body: Readable, maxBytes: number): Promise<{ sizeBytes: number; sha256: string }> {
    await mkdir(join(this.dir, buildId, String(attempt)), { recursive: true, mode: 0o700 });
    const final = this.path(buildId, attempt, name);
    const temp = `${final}.${randomBytes(6).toString('hex')}.partial`;
    const hash = createHash('sha256');
    let size = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        size += chunk.length;
        if (size > maxBytes) return done(new ExpoError('API_BODY_TOO_LARGE', `artifact '${name}' is larger than the cap of ${maxBytes} bytes`));
        hash.update(chunk);
        done(null, chunk);
      },
    });
    try {
      await pipeline(body, meter, createWriteStream(temp, { mode: 0o600 }));
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
    for (const path of [this.path(buildId, attempt, name), this.legacyPath(buildId, attempt, name)]) {
      if (path === null) continue;
      try {
        const s = await stat(path);
        if (s.isFile()) return { stream: createReadStream(path), sizeBytes: s.size };
      } catch {
        // Not there: try the next place.
      }
    }
    return null;
  }
}
