/**
 * S3 housekeeping against an S3-compatible service that leaves the next markers out of a
 * truncated ListMultipartUploads page (seen in the wild; s3rver always sends them). A real HTTP
 * server answers the listing pages and records the aborts.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { S3Artifacts } from '../../src/controller/s3-artifacts.ts';

const sha = (s: string) => createHash('sha256').update(s).digest('hex');
const LONG_AGO = '2020-01-01T00:00:00.000Z';

interface Upload {
  key: string;
  id: string;
}

/** One ListMultipartUploadsResult page: truncated, with no NextKeyMarker/NextUploadIdMarker. */
function page(uploads: Upload[], truncated: boolean): string {
  const items = uploads.map((u) => `<Upload><Key>${u.key}</Key><UploadId>${u.id}</UploadId><Initiated>${LONG_AGO}</Initiated></Upload>`).join('');
  return `<?xml version="1.0" encoding="UTF-8"?><ListMultipartUploadsResult><Bucket>b</Bucket><IsTruncated>${truncated}</IsTruncated>${items}</ListMultipartUploadsResult>`;
}

let server: Server | undefined;
afterEach(async () => {
  await new Promise((r) => server?.close(r) ?? r(undefined));
  server = undefined;
});

/** Serves `pages(keyMarker, uploadIdMarker)` for listings; records each abort's key and upload id. */
async function markerless(pages: (keyMarker: string | null, idMarker: string | null) => string) {
  const listings: (string | null)[] = [];
  const aborted: Upload[] = [];
  server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (req.method === 'GET' && url.searchParams.has('uploads')) {
      listings.push(url.searchParams.get('key-marker'));
      res.writeHead(200, { 'content-type': 'application/xml' }).end(pages(url.searchParams.get('key-marker'), url.searchParams.get('upload-id-marker')));
    } else if (req.method === 'DELETE' && url.searchParams.has('uploadId')) {
      aborted.push({ key: decodeURIComponent(url.pathname.replace(/^\/b\//, '')), id: url.searchParams.get('uploadId') ?? '' });
      res.writeHead(204).end();
    } else {
      res.writeHead(400).end();
    }
  });
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  const endpoint = `http://127.0.0.1:${(server!.address() as AddressInfo).port}`;
  const blobs = new S3Artifacts({
    location: { bucket: 'b', prefix: 'ab', endpoint, region: 'us-east-1', forcePathStyle: true },
    credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'secret-test-key' },
    abandonedMinAgeMs: 0,
  });
  return { blobs, listings, aborted };
}

describe('S3 housekeeping on a service without next markers', () => {
  it('goes on from the last upload of a truncated page, so uploads after a first page of skipped ones are aborted', async () => {
    // The first page holds only an upload housekeeping must skip (not our key shape).
    const foreign = { key: 'ab/backups/db.tar', id: 'u-foreign' };
    const stale = { key: `ab/b5/1/${sha('stale')}`, id: 'u-stale' };
    const s = await markerless((keyMarker) => (keyMarker === null ? page([foreign], true) : page([stale], false)));
    expect(await s.blobs.removeAbandoned(3600_000)).toEqual({ files: 1, bytes: 0 });
    expect(s.listings).toEqual([null, foreign.key]);
    expect(s.aborted).toEqual([stale]);
  });

  it('ends the pass when a truncated page gives no way forward (the same page again)', async () => {
    const stale = { key: `ab/b5/1/${sha('stale')}`, id: 'u-stale' };
    const s = await markerless(() => page([stale], true));
    await s.blobs.removeAbandoned(3600_000);
    expect(s.listings).toHaveLength(2);
  });
});
