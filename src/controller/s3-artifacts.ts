/**
 * Artifact bytes in an S3-compatible bucket (`--artifacts s3://bucket/prefix`): AWS S3, MinIO,
 * Cloudflare R2, Ceph… A file's key is `<prefix>/<buildId>/<attempt>/<sha256 of the name>`, as
 * the local adapter's path: the name never becomes a key, so no name reaches outside the
 * build's keys and a long or odd name never meets the service's key rules.
 *
 * An upload streams through a meter (size, SHA-256, the cap) into a multipart upload of 8 MiB
 * parts, 4 in flight: at most ~40 MiB of one upload is in memory, whatever its size. S3 makes an
 * object visible only when its multipart upload completes (or its single PUT ends), so a reader
 * never sees half a file; past the cap the multipart upload is aborted and nothing is left. An
 * upload cut short by a crash stays an incomplete multipart upload (invisible, but billed):
 * `removeAbandoned` aborts those, and a bucket lifecycle rule should too (docs/operations.md).
 *
 * Downloads go to the bucket directly: `downloadUrl` presigns a GetObject for a few minutes,
 * with the same Content-Disposition the controller would send. Credentials come from the SDK's
 * default chain (environment, ~/.aws, instance or task roles); none are handled here. Keys and
 * presigned URLs are never logged, and an S3 error is reported by its name and status only (its
 * body may name the key).
 */
import { createHash } from 'node:crypto';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectTaggingCommand,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { ExpoError } from '../protocol/errors.ts';
import type { ArtifactBlobs, StoredBlob } from './artifact-blobs.ts';
import type { S3Location } from './config.ts';
import { contentDisposition } from './content-disposition.ts';

export interface S3ArtifactsOptions {
  location: S3Location;
  /** Credentials to use instead of the SDK's default chain. Default: the chain (environment, ~/.aws, instance roles). */
  credentials?: S3ClientConfig['credentials'];
  /** Size of one multipart part, bytes (S3's minimum is 5 MiB). Default 8 MiB. */
  partSizeBytes?: number;
  /** Parts uploaded at once. Default 4. */
  partsInFlight?: number;
  /**
   * The least age of a multipart upload `removeAbandoned` aborts, whatever it is asked, ms.
   * Another controller's live upload of a large file over a slow link can take over an hour, and
   * this one cannot see it. Default 24 h.
   */
  abandonedMinAgeMs?: number;
}

/** See `S3ArtifactsOptions.abandonedMinAgeMs`. */
const ABANDONED_MIN_AGE_MS = 24 * 3600_000;

const MIB = 1024 * 1024;

/** The S3 adapter of the artifact store. */
export class S3Artifacts implements ArtifactBlobs {
  readonly kind = 's3';
  private readonly client: S3Client;
  private readonly bucket: string;
  /** `prefix/` or '' for the bucket's root. */
  private readonly keyPrefix: string;
  private readonly partSizeBytes: number;
  private readonly partsInFlight: number;
  private readonly abandonedMinAgeMs: number;
  /** Our keys: `<prefix><build>/<attempt>/<sha256 hex>`; housekeeping never touches another shape. */
  private readonly ourKey: RegExp;
  /** Keys this controller is uploading now (an upload may be retried under the same key). */
  private readonly uploading = new Map<string, number>();
  /** Set when tagging an object with its digest failed (an optional S3 feature): the object stays, untagged. */
  taggingFailed = false;

  constructor(options: S3ArtifactsOptions) {
    const l = options.location;
    this.bucket = l.bucket;
    this.keyPrefix = l.prefix === '' ? '' : `${l.prefix}/`;
    this.partSizeBytes = options.partSizeBytes ?? 8 * MIB;
    this.partsInFlight = options.partsInFlight ?? 4;
    this.abandonedMinAgeMs = options.abandonedMinAgeMs ?? ABANDONED_MIN_AGE_MS;
    this.ourKey = new RegExp(`^${this.keyPrefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}[^/]+/[0-9]+/[0-9a-f]{64}$`);
    this.client = new S3Client({
      region: l.region,
      ...(l.endpoint === null ? {} : { endpoint: l.endpoint }),
      forcePathStyle: l.forcePathStyle,
      ...(options.credentials === undefined ? {} : { credentials: options.credentials }),
      // The SDK's default (since 3.729) adds CRC32 checksums to every upload, which several
      // S3-compatible services (older MinIO, Ceph, GCS's interop API) refuse. The transfer is
      // TLS and the SHA-256 we compute is checked by every download, so only where an
      // operation requires one.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
  }

  /** Closes the client's kept-alive connections (at shutdown, after the last request). */
  close(): void {
    this.client.destroy();
  }

  private key(buildId: string, attempt: number, name: string): string {
    return `${this.keyPrefix}${buildId}/${attempt}/${createHash('sha256').update(name, 'utf8').digest('hex')}`;
  }

  async write(buildId: string, attempt: number, name: string, body: Readable, maxBytes: number): Promise<StoredBlob> {
    const hash = createHash('sha256');
    let size = 0;
    let tooLarge: ExpoError | null = null;
    const meter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        size += chunk.length;
        if (size > maxBytes) {
          tooLarge = new ExpoError('API_BODY_TOO_LARGE', `artifact '${name}' is larger than the cap of ${maxBytes} bytes`);
          return done(tooLarge);
        }
        hash.update(chunk);
        done(null, chunk);
      },
    });
    // A body that fails (the client went away) or passes the cap destroys the meter, whose
    // reader (the upload) then fails and aborts its multipart upload.
    pipeline(body, meter).catch(() => undefined);
    const Key = this.key(buildId, attempt, name);
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key, Body: meter, ContentType: 'application/octet-stream' },
      partSize: this.partSizeBytes,
      queueSize: this.partsInFlight,
      leavePartsOnError: false,
    });
    this.uploading.set(Key, (this.uploading.get(Key) ?? 0) + 1);
    try {
      await upload.done();
    } catch (err) {
      // The service failed mid-upload: stop reading the request too.
      meter.destroy();
      // Past the cap is the caller's 413 even when aborting the multipart upload failed too
      // (removeAbandoned and the lifecycle rule remove it later).
      if (tooLarge !== null) throw tooLarge;
      throw s3Failure('upload', err);
    } finally {
      const n = (this.uploading.get(Key) ?? 1) - 1;
      if (n === 0) this.uploading.delete(Key);
      else this.uploading.set(Key, n);
    }
    const sha256 = hash.digest('hex');
    // Also on the object, for whoever reads the bucket directly. Not user metadata: that is
    // fixed when a multipart upload begins, before the digest is known; a tag can follow.
    // Best effort: the digest that downloads check is the database's. A service without tagging,
    // or a bucket policy without s3:PutObjectTagging, must not turn a complete upload into a
    // failure the agent would retry forever, re-sending the whole file each time.
    try {
      await this.client.send(new PutObjectTaggingCommand({ Bucket: this.bucket, Key, Tagging: { TagSet: [{ Key: 'sha256', Value: sha256 }] } }));
    } catch {
      this.taggingFailed = true;
    }
    return { sizeBytes: size, sha256 };
  }

  async remove(buildId: string, attempt: number, name: string): Promise<void> {
    await this.send('delete', () => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.key(buildId, attempt, name) })));
  }

  async open(buildId: string, attempt: number, name: string): Promise<{ stream: Readable; sizeBytes: number } | null> {
    let res;
    try {
      res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.key(buildId, attempt, name) }));
    } catch (err) {
      if (errorName(err) === 'NoSuchKey' || httpStatus(err) === 404) return null;
      throw s3Failure('get', err);
    }
    return { stream: res.Body as Readable, sizeBytes: res.ContentLength ?? 0 };
  }

  /** A presigned GetObject, valid `expiresInS` seconds, that saves the file as `fileName`'s base name. */
  async downloadUrl(buildId: string, attempt: number, name: string, fileName: string, expiresInS: number): Promise<string | null> {
    const command = new GetObjectCommand({
      Bucket: this.bucket,
      Key: this.key(buildId, attempt, name),
      ResponseContentDisposition: contentDisposition(fileName),
      ResponseContentType: 'application/octet-stream',
    });
    return getSignedUrl(this.client, command, { expiresIn: expiresInS });
  }

  /** Deletes every object under `<prefix>/<buildId>/`, 1000 per request. */
  async removeBuild(buildId: string): Promise<{ files: number; bytes: number }> {
    const removed = { files: 0, bytes: 0 };
    const Prefix = `${this.keyPrefix}${buildId}/`;
    let ContinuationToken: string | undefined;
    do {
      const page = await this.send('list', () => this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix, ContinuationToken })));
      const objects = (page?.Contents ?? []).filter((o) => o.Key !== undefined);
      if (objects.length > 0) {
        const res = await this.send('delete', () => this.client.send(new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: objects.map((o) => ({ Key: o.Key })), Quiet: true } })));
        const failed = res?.Errors ?? [];
        if (failed.length > 0) throw new Error(`S3 delete failed for ${failed.length} of build ${buildId}'s objects: ${failed[0]?.Code ?? 'unknown'}`);
        removed.files += objects.length;
        removed.bytes += objects.reduce((n, o) => n + (o.Size ?? 0), 0);
      }
      ContinuationToken = page?.IsTruncated === true ? page.NextContinuationToken : undefined;
    } while (ContinuationToken !== undefined);
    return removed;
  }

  /**
   * Aborts the multipart uploads of our keys under the prefix initiated more than `olderThanMs`
   * ago, and never less than `abandonedMinAgeMs` (by the service's clock: wall-clock time). Not
   * those this controller is uploading now, nor any key of another shape (another application's
   * upload in the same bucket). Their parts' bytes are not counted (that would take a ListParts
   * per upload): `bytes` is 0.
   */
  async removeAbandoned(olderThanMs: number): Promise<{ files: number; bytes: number }> {
    const removed = { files: 0, bytes: 0 };
    const cutoff = Date.now() - Math.max(olderThanMs, this.abandonedMinAgeMs);
    let KeyMarker: string | undefined;
    let UploadIdMarker: string | undefined;
    for (;;) {
      const page = await this.send('list uploads', () => this.client.send(new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: this.keyPrefix, KeyMarker, UploadIdMarker })));
      for (const u of page?.Uploads ?? []) {
        if (u.Key === undefined || u.UploadId === undefined || u.Initiated === undefined || u.Initiated.getTime() > cutoff) continue;
        if (!this.ourKey.test(u.Key) || this.uploading.has(u.Key)) continue;
        await this.send('abort upload', () => this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: u.Key, UploadId: u.UploadId })), ['NoSuchUpload']);
        removed.files++;
      }
      if (page?.IsTruncated !== true) break;
      // Some S3-compatible services leave the next markers out of a truncated page: go on from
      // its last upload (starting over would see the same first page in every pass, and nothing
      // after it would ever be aborted). A page that gives no way forward ends the pass.
      const last = page.Uploads?.at(-1);
      const next = page.NextKeyMarker !== undefined ? { key: page.NextKeyMarker, id: page.NextUploadIdMarker } : { key: last?.Key, id: last?.UploadId };
      if (next.key === undefined || (next.key === KeyMarker && next.id === UploadIdMarker)) break;
      KeyMarker = next.key;
      UploadIdMarker = next.id;
    }
    return removed;
  }

  /** Sends a command; an error named in `tolerated` answers undefined, any other is reported without its body. */
  private async send<T>(op: string, call: () => Promise<T>, tolerated: readonly string[] = []): Promise<T | undefined> {
    try {
      return await call();
    } catch (err) {
      if (tolerated.includes(errorName(err))) return undefined;
      throw s3Failure(op, err);
    }
  }
}

const errorName = (err: unknown): string => String((err as { name?: unknown }).name ?? '');
const httpStatus = (err: unknown): number | undefined => (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;

/**
 * An S3 error as our log may show it: the operation, the error's name and status, no more. The
 * SDK's error carries the service's parsed answer, which may name the key (and the request, its
 * signature), so it is not kept as the cause.
 */
function s3Failure(op: string, err: unknown): Error {
  if (err instanceof ExpoError) return err;
  const status = httpStatus(err);
  return new Error(`S3 ${op} failed: ${errorName(err) || 'error'}${status === undefined ? '' : ` (HTTP ${status})`}`);
}
