/**
 * Artifact bytes on disk, beside the database: `<dir>/<buildId>/<attempt>/<sha256 of the name>`
 * — an attempt that lost its lease can never overwrite a later attempt's file. The name (a
 * relative path such as `ios/build/App.ipa`, validated by the route) never becomes a path on
 * disk: its hash does, so no name can reach outside the directory, two names can never share a
 * file, and a long or odd name never meets a file system's limits. A file is streamed to a
 * temporary name while its SHA-256 is computed and its size checked against the cap, then
 * renamed into place — a reader never sees half a file, and an upload that fails or exceeds the
 * cap leaves nothing behind. Re-uploading a name replaces it (the agent retries uploads).
 * The controller serves these bytes itself (`downloadUrl` is null).
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ExpoError } from '../protocol/errors.ts';
import type { ArtifactBlobs, StoredBlob } from './artifact-blobs.ts';

/** The local-directory adapter of the artifact store (`--artifacts-dir`, the default). */
export class ArtifactFiles implements ArtifactBlobs {
  readonly kind = 'dir';
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
  async write(buildId: string, attempt: number, name: string, body: Readable, maxBytes: number): Promise<StoredBlob> {
    try {
      return await this.writeFile(buildId, attempt, name, body, maxBytes);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      // fs write errors carry no path: the temporary file is where the write failed.
      if (e.code === 'ENOSPC' && e.path === undefined) e.path = join(this.dir, buildId);
      throw err;
    }
  }

  private async writeFile(buildId: string, attempt: number, name: string, body: Readable, maxBytes: number): Promise<StoredBlob> {
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

  /** Null: the controller serves a local file itself (the download route streams `open`). */
  async downloadUrl(_buildId: string, _attempt: number, _name: string, _fileName: string, _expiresInS: number): Promise<string | null> {
    return null;
  }

  /** Removes `<dir>/<buildId>` with everything in it. */
  async removeBuild(buildId: string): Promise<{ files: number; bytes: number }> {
    const folder = join(this.dir, buildId);
    const removed = await sizeOfFiles(folder, () => true, 0);
    await rm(folder, { recursive: true, force: true });
    return removed;
  }

  /** Removes `.partial` files (uploads cut short by a SIGKILL) last written more than `olderThanMs` ago. */
  async removeAbandoned(olderThanMs: number): Promise<{ files: number; bytes: number }> {
    return sizeOfFiles(this.dir, (name) => name.endsWith('.partial'), olderThanMs, true);
  }
}

/**
 * Counts (and with `remove`, removes) the files under `root` whose name `pick` accepts and that
 * were last written at least `olderThanMs` ago. A missing root, or a file gone meanwhile (an
 * upload that finished and renamed its `.partial`), counts as nothing.
 */
async function sizeOfFiles(root: string, pick: (name: string) => boolean, olderThanMs: number, remove = false): Promise<{ files: number; bytes: number }> {
  const found = { files: 0, bytes: 0 };
  let entries;
  try {
    entries = await readdir(root, { recursive: true, withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return found;
    throw err;
  }
  const wallNow = Date.now(); // file times are wall-clock times
  for (const e of entries) {
    if (!e.isFile() || !pick(e.name)) continue;
    const path = join(e.parentPath, e.name);
    try {
      const s = await stat(path);
      if (wallNow - s.mtimeMs < olderThanMs) continue;
      if (remove) await rm(path, { force: true });
      found.files++;
      found.bytes += s.size;
    } catch {
      // gone meanwhile: nothing to do
    }
  }
  return found;
}
