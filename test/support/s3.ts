/**
 * A real S3 API server for the tests: s3rver (a Node implementation of S3's REST API over a
 * directory) on 127.0.0.1, an ephemeral port and a temp dir, with one bucket. Start it in
 * `beforeAll`, `stop()` it in `afterAll`: its server and files go with it.
 *
 * s3rver 3.7 implements multipart uploads (create, upload part, complete) but not
 * ListMultipartUploads nor AbortMultipartUpload, which the S3 adapter needs for an over-cap upload
 * and for abandoned ones. Both are added here, in front of s3rver's router, as S3 defines them
 * (`GET /bucket?uploads&prefix=…`, `DELETE /bucket/key?uploadId=…`), over the very directory
 * where s3rver keeps an upload's parts (`<bucket>/._S3rver_uploads/<uploadId>/`, with its key in
 * `key`). They skip s3rver's signature check (the one thing they leave out); every other request
 * is s3rver's own, signature checked.
 *
 * The SDK reaches it with path-style URLs and s3rver's built-in credentials (`S3RVER`/`S3RVER`).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { readdir, rm, stat, readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { S3Location } from '../../src/controller/config.ts';

interface KoaContext {
  method: string;
  path: string;
  query: Record<string, string | string[] | undefined>;
  status: number;
  type: string;
  body: unknown;
  req: IncomingMessage;
  res: ServerResponse;
}
type Middleware = (ctx: KoaContext, next: () => Promise<void>) => Promise<void>;
interface S3rverServer {
  middleware: Middleware[];
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
}
type S3rverClass = new (options: Record<string, unknown>) => S3rverServer;

export interface TestS3 {
  /** `http://127.0.0.1:<port>` */
  endpoint: string;
  bucket: string;
  /** The directory s3rver keeps the bucket in. */
  dir: string;
  /** s3rver's built-in key pair. */
  credentials: { accessKeyId: string; secretAccessKey: string };
  /** An S3Location on this server, under `prefix`. */
  location(prefix: string): S3Location;
  /** Every request s3rver received: method, path, query parameter names, whether it had an Authorization header. */
  requests: { method: string; path: string; query: string[]; authorization: boolean }[];
  /** The multipart uploads begun and neither completed nor aborted: `{key, uploadId, dir}`. */
  pendingUploads(): Promise<{ key: string; uploadId: string; dir: string }[]>;
  stop(): Promise<void>;
}

const xml = (s: string): string => s.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);

export async function startS3(bucket = 'artifacts'): Promise<TestS3> {
  const S3rver = createRequire(import.meta.url)('s3rver') as S3rverClass;
  const dir = mkdtempSync(join(tmpdir(), 'expo-s3-'));
  const uploadsDir = join(dir, bucket, '._S3rver_uploads');

  const pendingUploads = async (): Promise<{ key: string; uploadId: string; dir: string; initiated: Date }[]> => {
    let ids: string[];
    try {
      ids = await readdir(uploadsDir);
    } catch {
      return [];
    }
    const found = [];
    for (const uploadId of ids) {
      const keyFile = join(uploadsDir, uploadId, 'key');
      try {
        found.push({ key: await readFile(keyFile, 'utf8'), uploadId, dir: join(uploadsDir, uploadId), initiated: (await stat(keyFile)).mtime });
      } catch {
        // completed or aborted meanwhile
      }
    }
    return found;
  };

  // ListMultipartUploads and AbortMultipartUpload (path-style), which s3rver lacks.
  const multipart: Middleware = async (ctx, next) => {
    const [, b, ...rest] = ctx.path.split('/');
    if (b !== bucket) return next();
    const key = decodeURIComponent(rest.join('/'));
    if (ctx.method === 'GET' && key === '' && 'uploads' in ctx.query) {
      const prefix = typeof ctx.query.prefix === 'string' ? ctx.query.prefix : '';
      const uploads = (await pendingUploads()).filter((u) => u.key.startsWith(prefix));
      ctx.type = 'application/xml';
      ctx.body =
        `<?xml version="1.0" encoding="UTF-8"?>\n<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">` +
        `<Bucket>${xml(bucket)}</Bucket><Prefix>${xml(prefix)}</Prefix><MaxUploads>1000</MaxUploads><IsTruncated>false</IsTruncated>` +
        uploads.map((u) => `<Upload><Key>${xml(u.key)}</Key><UploadId>${u.uploadId}</UploadId><Initiated>${u.initiated.toISOString()}</Initiated><StorageClass>STANDARD</StorageClass></Upload>`).join('') +
        `</ListMultipartUploadsResult>`;
      return;
    }
    const uploadId = ctx.query.uploadId;
    if (ctx.method === 'DELETE' && key !== '' && typeof uploadId === 'string') {
      const upload = (await pendingUploads()).find((u) => u.uploadId === uploadId && u.key === key);
      if (upload === undefined) {
        ctx.status = 404;
        ctx.type = 'application/xml';
        ctx.body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchUpload</Code><Message>The specified upload does not exist.</Message></Error>`;
        return;
      }
      await rm(upload.dir, { recursive: true, force: true });
      ctx.status = 204;
      return;
    }
    return next();
  };

  const requests: TestS3['requests'] = [];
  const record: Middleware = async (ctx, next) => {
    requests.push({ method: ctx.method, path: ctx.path, query: Object.keys(ctx.query), authorization: ctx.req.headers.authorization !== undefined });
    return next();
  };

  const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: dir, configureBuckets: [{ name: bucket }], vhostBuckets: false });
  // Before s3rver's router (its last middleware), after its logging, XML and vhost ones.
  server.middleware.splice(server.middleware.length - 1, 0, multipart);
  server.middleware.unshift(record);
  let address: AddressInfo;
  try {
    address = await server.run();
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const endpoint = `http://127.0.0.1:${address.port}`;
  let stopped = false;
  return {
    endpoint,
    bucket,
    dir,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    requests,
    location: (prefix) => ({ bucket, prefix, endpoint, region: 'us-east-1', forcePathStyle: true }),
    pendingUploads: async () => (await pendingUploads()).map(({ key, uploadId, dir: d }) => ({ key, uploadId, dir: d })),
    stop: async () => {
      if (stopped) return;
      stopped = true;
      try {
        await server.close();
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
