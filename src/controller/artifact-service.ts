/**
 * Artifacts: a worker stores a collected file while its attempt is current (lease-fenced,
 * streamed, capped), and admins list and read them. The bytes live in the artifact store port
 * (`ArtifactBlobs`: a directory or an S3 bucket); the database keeps one record per file (name,
 * attempt, size, digest).
 *
 * An upload checks the attempt three times: before writing (so a stale worker writes nothing),
 * when the write fails for a missing folder (a build pruned or ended meanwhile answers for
 * itself: 409, 404), and after writing (the upload may have taken minutes; a file whose attempt
 * ended meanwhile is removed, not recorded).
 */
import type { Readable } from 'node:stream';
import { ExpoError } from '../protocol/errors.ts';
import type { ArtifactProblem } from '../protocol/schemas.ts';
import type { ArtifactBlobs } from './artifact-blobs.ts';
import type { BuildService } from './build-service.ts';
import type { ArtifactRecord, Store, WorkerRecord } from './store/store.ts';

/** What the artifact service reads and writes in the store. */
export type ArtifactStore = Pick<Store, 'putArtifact' | 'listArtifacts'>;

export interface ArtifactServiceOptions {
  store: ArtifactStore;
  /** Who may write (the current attempt) and which builds exist. */
  builds: Pick<BuildService, 'currentAttempt' | 'getBuild'>;
  /** Where the bytes live. */
  files: ArtifactBlobs;
  /** The largest artifact accepted, in bytes. */
  maxArtifactBytes: number;
  /** The time source, in ms since the epoch. */
  now: () => number;
}

export interface Upload {
  buildId: string;
  /** The artifact's name (already checked): its path relative to the build's work directory. */
  name: string;
  /** The lease as the worker presents it (plain). */
  lease: string;
  /** The size the request declared (Content-Length), 0 when it declared none. */
  declaredBytes: number;
  body: Readable;
}

export class ArtifactService {
  private readonly o: ArtifactServiceOptions;

  constructor(options: ArtifactServiceOptions) {
    this.o = options;
  }

  /** Stores the file for `worker`'s current attempt and records it; 403, 404, 409 or 413 otherwise. */
  async upload(worker: WorkerRecord, u: Upload): Promise<ArtifactRecord> {
    const { attempt } = await this.o.builds.currentAttempt(worker, u.buildId, u.lease);
    if (u.declaredBytes > this.o.maxArtifactBytes) {
      throw new ExpoError('API_BODY_TOO_LARGE', `artifact '${u.name}' is larger than the cap of ${this.o.maxArtifactBytes} bytes`);
    }
    let stored;
    try {
      stored = await this.o.files.write(u.buildId, attempt.attempt, u.name, u.body, this.o.maxArtifactBytes);
    } catch (err) {
      // Its folder removed under the upload: a build pruned (or ended) meanwhile answers for
      // itself (409 BUILD_OVER, 404…); for a build still current the folder's loss is ours (500).
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') await this.o.builds.currentAttempt(worker, u.buildId, u.lease);
      throw err;
    }
    try {
      await this.o.builds.currentAttempt(worker, u.buildId, u.lease);
    } catch (err) {
      await this.o.files.remove(u.buildId, attempt.attempt, u.name);
      throw err;
    }
    const record: ArtifactRecord = { buildId: u.buildId, name: u.name, attempt: attempt.attempt, sizeBytes: stored.sizeBytes, sha256: stored.sha256, createdAt: this.o.now() };
    await this.o.store.putArtifact(record);
    return record;
  }

  /** The build's stored artifacts (by name) and the declared ones its last attempt could not store; 404 for no build. */
  async list(buildId: string): Promise<{ artifacts: ArtifactRecord[]; problems: ArtifactProblem[] }> {
    const build = await this.o.builds.getBuild(buildId);
    return { artifacts: await this.o.store.listArtifacts(buildId), problems: build.artifactProblems };
  }

  /** One artifact's record and its bytes; 404 when the build, the record or the file is missing. */
  async open(buildId: string, name: string): Promise<{ record: ArtifactRecord; stream: Readable; sizeBytes: number }> {
    await this.o.builds.getBuild(buildId);
    const record = (await this.o.store.listArtifacts(buildId)).find((a) => a.name === name);
    const file = record ? await this.o.files.open(buildId, record.attempt, name) : null;
    if (!record || !file) throw new ExpoError('API_NOT_FOUND', `build ${buildId} has no artifact '${name}'`);
    return { record, ...file };
  }

  /**
   * Where a client gets one artifact: a URL it may fetch for `expiresInS` seconds (an S3
   * bucket's presigned GET), or the bytes (a local directory); 404 as `open`.
   */
  async download(buildId: string, name: string, expiresInS: number): Promise<{ record: ArtifactRecord; url: string } | { record: ArtifactRecord; stream: Readable; sizeBytes: number }> {
    if (this.o.files.kind === 'dir') return this.open(buildId, name);
    await this.o.builds.getBuild(buildId);
    const record = (await this.o.store.listArtifacts(buildId)).find((a) => a.name === name);
    if (!record) throw new ExpoError('API_NOT_FOUND', `build ${buildId} has no artifact '${name}'`);
    // Presigning checks nothing: an object removed meanwhile answers the client 404 from S3.
    const url = await this.o.files.downloadUrl(buildId, record.attempt, name, name, expiresInS);
    if (url === null) return this.open(buildId, name);
    return { record, url };
  }
}
