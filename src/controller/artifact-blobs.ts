/**
 * The artifact store port: where an artifact's bytes live. The store (the database) keeps one
 * record per file; the bytes are here, keyed by build, attempt and name. Two adapters:
 * `ArtifactFiles` (a local directory, the default: `--artifacts-dir`) and `S3Artifacts`
 * (`--artifacts s3://bucket/prefix`, any S3-compatible service: multipart upload, downloads by
 * presigned URL).
 *
 * Every adapter: streams an upload (never the whole file in memory) while computing its SHA-256
 * and enforcing the cap (413 `API_BODY_TOO_LARGE` past it, nothing left behind); makes a file
 * visible only once complete (a reader never sees half of one); replaces a file written again
 * under the same key (the agent retries uploads).
 */
import type { Readable } from 'node:stream';

export interface StoredBlob {
  sizeBytes: number;
  sha256: string;
}

export interface ArtifactBlobs {
  /** `dir` or `s3`, for the log and /health. */
  readonly kind: 'dir' | 's3';
  /** Streams `body` into place; rejects with 413 past `maxBytes`, with nothing kept. */
  write(buildId: string, attempt: number, name: string, body: Readable, maxBytes: number): Promise<StoredBlob>;
  /** Removes one file; nothing when it is not there. */
  remove(buildId: string, attempt: number, name: string): Promise<void>;
  /** The file's bytes, or null when there is no such file. */
  open(buildId: string, attempt: number, name: string): Promise<{ stream: Readable; sizeBytes: number } | null>;
  /**
   * Where a client may fetch the file itself, for `expiresInS` seconds (a presigned URL), or null
   * when the controller serves the bytes (a local directory). `fileName` is what the download
   * is saved as (Content-Disposition).
   */
  downloadUrl(buildId: string, attempt: number, name: string, fileName: string, expiresInS: number): Promise<string | null>;
  /** Removes every file of a build (retention); answers how many files and bytes went. */
  removeBuild(buildId: string): Promise<{ files: number; bytes: number }>;
  /**
   * Removes what interrupted uploads left (a local `.partial` file, an S3 multipart upload never
   * completed) older than `olderThanMs`; answers how many files and bytes went.
   */
  removeAbandoned(olderThanMs: number): Promise<{ files: number; bytes: number }>;
}
