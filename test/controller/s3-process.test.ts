/**
 * The controller process with `--artifacts s3://…` (main's wiring): credentials from the
 * environment (the SDK's default chain), at start only abandoned multipart uploads older than
 * the retention's age are aborted (the bucket may be shared with a controller uploading right
 * now), an upload lands in the bucket, a download answers 302, and neither the key nor a
 * presigned URL reaches the log.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateMultipartUploadCommand, S3Client } from '@aws-sdk/client-s3';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startS3, type TestS3 } from '../support/s3.ts';
import { startControllerProcess, type ControllerProcess } from '../support/controller-process.ts';

const ADMIN = 'process-s3-admin-key-0123456789';
const admin = { authorization: `Bearer ${ADMIN}` };
const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

let s3: TestS3;
let dir: string;
let ctl: ControllerProcess | undefined;
beforeAll(async () => {
  s3 = await startS3();
  dir = mkdtempSync(join(tmpdir(), 'expo-s3-proc-'));
});
afterAll(async () => {
  await ctl?.stop();
  await s3?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('controller process with artifacts in S3', () => {
  it('starts on the bucket with credentials from the environment, aborts only old abandoned uploads, stores and redirects, logs no key or URL', async () => {
    const client = new S3Client({ region: 'us-east-1', endpoint: s3.endpoint, forcePathStyle: true, credentials: s3.credentials });
    let stale: string;
    let fresh: string;
    let foreign: string;
    // Keys of the controller's shape (<prefix>/<build>/<attempt>/<sha256 of the name>), and another
    // application's under the same prefix.
    const hex = 'a'.repeat(64);
    try {
      stale = (await client.send(new CreateMultipartUploadCommand({ Bucket: s3.bucket, Key: `proc/old/1/${hex}` }))).UploadId!;
      fresh = (await client.send(new CreateMultipartUploadCommand({ Bucket: s3.bucket, Key: `proc/new/1/${hex}` }))).UploadId!;
      foreign = (await client.send(new CreateMultipartUploadCommand({ Bucket: s3.bucket, Key: 'proc/backup.tar' }))).UploadId!;
    } finally {
      client.destroy();
    }
    // Older than a day: abandoned. Two hours old: maybe another controller's slow upload, kept.
    const aged = (ms: number) => new Date(Date.now() - ms);
    for (const u of await s3.pendingUploads()) {
      const when = u.uploadId === fresh ? aged(2 * 3600_000) : aged(25 * 3600_000);
      utimesSync(join(u.dir, 'key'), when, when);
    }

    ctl = await startControllerProcess({
      dbPath: join(dir, 'controller.db'),
      apiKey: ADMIN,
      extraArgs: ['--artifacts', `s3://${s3.bucket}/proc`, '--s3-endpoint', s3.endpoint],
      env: { AWS_ACCESS_KEY_ID: s3.credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey, AWS_PROFILE: '', AWS_CONFIG_FILE: join(dir, 'none'), AWS_SHARED_CREDENTIALS_FILE: join(dir, 'none') },
    });
    const left = (await s3.pendingUploads()).map((u) => u.uploadId);
    expect(left).not.toContain(stale);
    expect(left.sort()).toEqual([fresh, foreign].sort());

    const call = async (method: 'GET' | 'POST' | 'PUT', path: string, headers: Record<string, string>, body?: unknown) => {
      const res = await request(`${ctl!.url}${path}`, {
        method,
        headers: { ...headers, ...(body === undefined ? {} : { 'content-type': Buffer.isBuffer(body) ? 'application/octet-stream' : 'application/json' }) },
        body: body === undefined ? undefined : Buffer.isBuffer(body) ? body : JSON.stringify(body),
      });
      const text = await res.body.text();
      return { status: res.statusCode, headers: res.headers, json: () => JSON.parse(text) as Record<string, unknown> };
    };
    const worker = await call('POST', '/api/v1/workers', admin, { id: 'mac-1' });
    expect(worker.status).toBe(201);
    const wauth = { authorization: `Bearer ${worker.json().apiKey as string}` };
    const build = await call('POST', '/api/v1/builds', admin, { steps: [{ name: 'build', run: 'true' }], artifacts: ['out/*'] });
    const id = build.json().id as string;
    const claim = await call('POST', '/api/v1/workers/mac-1/poll', wauth, { slotsFree: 1, runningBuilds: [], waitS: 0 });
    const lease = claim.json().lease as string;
    const bytes = Buffer.from('bytes stored in the bucket');
    const up = await call('PUT', `/api/v1/builds/${id}/artifacts/out/App.ipa`, { ...wauth, 'x-expo-lease': lease }, bytes);
    expect(up.status).toBe(201);

    const down = await call('GET', `/api/v1/builds/${id}/artifacts/out/App.ipa`, admin);
    expect(down.status).toBe(302);
    const fetched = await fetch(String(down.headers.location));
    expect(Buffer.from(await fetched.arrayBuffer()).equals(bytes)).toBe(true);

    const output = ctl.output;
    expect(await ctl.stop('SIGTERM')).toBe(0);
    ctl = undefined;
    const log = output.join('\n');
    expect(log).toContain('artifact stored');
    // Neither the object's key (the name's hash) nor a presigned URL's signature nor the secret key.
    expect(log).not.toContain(sha('out/App.ipa'));
    expect(log).not.toContain('X-Amz-Signature');
    expect(log).not.toContain(s3.endpoint);
  });
});
