/**
 * The S3 adapter of the artifact store against a real S3 API server (s3rver, test/support/s3.ts)
 * through the real AWS SDK: a large streamed upload in several parts, downloaded by its
 * presigned URL; the cap (413, no object, no multipart upload left); a retry replacing a file;
 * a build's removal; an abandoned multipart upload aborted once old.
 */
import { createHash, randomBytes } from 'node:crypto';
import { utimesSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { CreateMultipartUploadCommand, GetObjectTaggingCommand, S3Client, UploadPartCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { contentDisposition } from '../../src/controller/content-disposition.ts';
import { S3Artifacts } from '../../src/controller/s3-artifacts.ts';
import { startS3, type TestS3 } from '../support/s3.ts';

const MIB = 1024 * 1024;
const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

let s3: TestS3;
beforeAll(async () => {
  s3 = await startS3();
});
afterAll(async () => {
  await s3?.stop();
});

/** `mib` MiB of random bytes as a stream made chunk by chunk (never one buffer), and their SHA-256 once read. */
function generated(mib: number): { stream: Readable; digest: () => string } {
  const hash = createHash('sha256');
  let done = false;
  const stream = Readable.from(
    (function* () {
      for (let i = 0; i < mib; i++) {
        const chunk = randomBytes(MIB);
        hash.update(chunk);
        yield chunk;
      }
      done = true;
    })(),
  );
  return {
    stream,
    digest: () => {
      if (!done) throw new Error('the stream was not read to its end');
      return hash.digest('hex');
    },
  };
}

const client = () => new S3Client({ region: 'us-east-1', endpoint: s3.endpoint, forcePathStyle: true, credentials: s3.credentials });
/** An adapter on `prefix`; `defaults` keeps the product's least abandoned-upload age (a day) instead of none. */
const adapter = (prefix: string, defaults = false) =>
  new S3Artifacts({ location: s3.location(prefix), credentials: s3.credentials, partSizeBytes: 5 * MIB, partsInFlight: 4, ...(defaults ? {} : { abandonedMinAgeMs: 0 }) });
const text = async (r: Readable) => {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
};

describe('S3Artifacts on s3rver', () => {
  it('streams a 200 MB artifact up in several parts and serves it by a presigned URL with the same SHA-256', { timeout: 600_000 }, async () => {
    const blobs = adapter('big');
    const from = s3.requests.length;
    const input = generated(200);
    const stored = await blobs.write('b1', 1, 'ios/build/App.ipa', input.stream, 300 * MIB);
    expect(stored).toEqual({ sizeBytes: 200 * MIB, sha256: input.digest() });
    const parts = s3.requests.slice(from).filter((r) => r.method === 'PUT' && r.query.includes('partNumber'));
    expect(parts.length).toBe(40); // 200 MiB in 5 MiB parts
    expect(await s3.pendingUploads()).toEqual([]);

    const url = await blobs.downloadUrl('b1', 1, 'ios/build/App.ipa', 'ios/build/App.ipa', 60);
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/artifacts\/big\/b1\/1\/[0-9a-f]{64}\?/);
    const res = await fetch(url!);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-disposition')).toBe(contentDisposition('ios/build/App.ipa'));
    const hash = createHash('sha256');
    let size = 0;
    for await (const chunk of res.body!) {
      hash.update(chunk);
      size += chunk.length;
    }
    expect({ size, sha256: hash.digest('hex') }).toEqual({ size: 200 * MIB, sha256: stored.sha256 });
    await blobs.removeBuild('b1');
  });

  it('refuses an upload past the cap with 413, aborting its multipart upload: no object, no upload left', async () => {
    const blobs = adapter('cap');
    const from = s3.requests.length;
    const err = await blobs.write('b2', 1, 'big.ipa', generated(20).stream, 12 * MIB).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'API_BODY_TOO_LARGE' });
    const seen = s3.requests.slice(from);
    // It did get as far as a multipart upload with parts, and aborted it.
    expect(seen.some((r) => r.method === 'POST' && r.query.includes('uploads'))).toBe(true);
    expect(seen.some((r) => r.method === 'PUT' && r.query.includes('partNumber'))).toBe(true);
    expect(seen.some((r) => r.method === 'DELETE' && r.query.includes('uploadId'))).toBe(true);
    expect(await s3.pendingUploads()).toEqual([]);
    expect(await blobs.open('b2', 1, 'big.ipa')).toBeNull();
    expect(await blobs.removeBuild('b2')).toEqual({ files: 0, bytes: 0 });
  });

  it('a small file is one PUT; writing the same name again replaces it; remove takes it away', async () => {
    const blobs = adapter('small');
    expect(await blobs.write('b3', 1, 'out/report.xml', Readable.from([Buffer.from('first')]), MIB)).toEqual({ sizeBytes: 5, sha256: sha('first') });
    expect(await blobs.write('b3', 1, 'out/report.xml', Readable.from([Buffer.from('second try')]), MIB)).toEqual({ sizeBytes: 10, sha256: sha('second try') });
    const file = await blobs.open('b3', 1, 'out/report.xml');
    expect(file?.sizeBytes).toBe(10);
    expect(await text(file!.stream)).toBe('second try');
    // The key is the name's hash, never the name; the object carries its SHA-256 as a tag.
    const s3c = client();
    try {
      const tags = await s3c.send(new GetObjectTaggingCommand({ Bucket: s3.bucket, Key: `small/b3/1/${sha('out/report.xml')}` }));
      expect(tags.TagSet).toEqual([{ Key: 'sha256', Value: sha('second try') }]);
    } finally {
      s3c.destroy();
    }
    // An empty file is a file.
    expect(await blobs.write('b3', 1, 'empty', Readable.from([]), MIB)).toEqual({ sizeBytes: 0, sha256: sha('') });
    expect((await blobs.open('b3', 1, 'empty'))?.sizeBytes).toBe(0);
    await blobs.remove('b3', 1, 'out/report.xml');
    expect(await blobs.open('b3', 1, 'out/report.xml')).toBeNull();
    await blobs.remove('b3', 1, 'never-there');
  });

  it('removeBuild deletes every file of the build, all attempts, and nothing of another build or prefix', async () => {
    const blobs = adapter('rb');
    const other = adapter('rb-other');
    await blobs.write('b4', 1, 'a.ipa', Readable.from([Buffer.from('aaa')]), MIB);
    await blobs.write('b4', 2, 'a.ipa', Readable.from([Buffer.from('aaaa')]), MIB);
    await blobs.write('b4', 2, 'logs/b.txt', Readable.from([Buffer.from('bb')]), MIB);
    // A build id that b4 is a prefix of: not b4's.
    await blobs.write('b40', 1, 'a.ipa', Readable.from([Buffer.from('keep')]), MIB);
    await other.write('b4', 1, 'a.ipa', Readable.from([Buffer.from('keep too')]), MIB);
    expect(await blobs.removeBuild('b4')).toEqual({ files: 3, bytes: 9 });
    expect(await blobs.open('b4', 1, 'a.ipa')).toBeNull();
    expect(await blobs.open('b4', 2, 'logs/b.txt')).toBeNull();
    expect(await text((await blobs.open('b40', 1, 'a.ipa'))!.stream)).toBe('keep');
    expect(await text((await other.open('b4', 1, 'a.ipa'))!.stream)).toBe('keep too');
    expect(await blobs.removeBuild('b4')).toEqual({ files: 0, bytes: 0 });
  });

  it('removeAbandoned aborts a multipart upload under its prefix once older than the age, and keeps a fresh one', async () => {
    const blobs = adapter('ab');
    const s3c = client();
    try {
      // What a controller killed mid-upload leaves: an upload begun, a part sent, never completed.
      const begin = async (key: string) => {
        const { UploadId } = await s3c.send(new CreateMultipartUploadCommand({ Bucket: s3.bucket, Key: key }));
        await s3c.send(new UploadPartCommand({ Bucket: s3.bucket, Key: key, UploadId, PartNumber: 1, Body: Buffer.alloc(1024) }));
        return UploadId!;
      };
      // Keys of our shape (<prefix><build>/<attempt>/<sha256 of the name>), and one of another
      // application's under the same prefix, which housekeeping never touches.
      const stale = await begin(`ab/b5/1/${sha('stale')}`);
      const fresh = await begin(`ab/b5/1/${sha('fresh')}`);
      const elsewhere = await begin(`not-ab/b5/1/${sha('stale')}`);
      const foreign = await begin('ab/backups/db.tar');
      expect(await blobs.removeAbandoned(3600_000)).toEqual({ files: 0, bytes: 0 });
      const twoHoursAgo = new Date(Date.now() - 2 * 3600_000);
      for (const u of await s3.pendingUploads()) if (u.uploadId !== fresh) utimesSync(join(u.dir, 'key'), twoHoursAgo, twoHoursAgo);
      // By default an upload younger than a day is someone's live upload of a large file.
      expect(await adapter('ab', true).removeAbandoned(3600_000)).toEqual({ files: 0, bytes: 0 });
      expect(await blobs.removeAbandoned(3600_000)).toEqual({ files: 1, bytes: 0 });
      const left = (await s3.pendingUploads()).map((u) => u.uploadId).sort();
      expect(left).toEqual([fresh, elsewhere, foreign].sort());
      expect(left).not.toContain(stale);
      expect(await adapter('not-ab').removeAbandoned(3600_000)).toEqual({ files: 1, bytes: 0 });
      expect(await blobs.removeAbandoned(0)).toEqual({ files: 1, bytes: 0 });
      expect((await s3.pendingUploads()).map((u) => u.uploadId)).toEqual([foreign]);
    } finally {
      s3c.destroy();
    }
  });

  it('reports an S3 failure by its name and status, never the key', async () => {
    const blobs = new S3Artifacts({ location: { ...s3.location('x'), bucket: 'no-such-bucket' }, credentials: s3.credentials });
    const err = (await blobs.write('b6', 1, 'secret/name.ipa', Readable.from([Buffer.from('x')]), MIB).catch((e: unknown) => e)) as Error;
    expect(err.message).toMatch(/^S3 upload failed: NoSuchBucket \(HTTP 404\)$/);
    expect(err.cause).toBeUndefined();
    expect(JSON.stringify(err)).not.toContain(sha('secret/name.ipa'));
  });
});
