/**
 * `expo-worker artifacts ID --download DIR` as a person runs it (`node src/cli.ts`, a real
 * controller on loopback): artifacts whose names clash as file and folder, and a DIR holding a
 * symlink or a file where an artifact's folder goes. Each artifact that can be saved is saved;
 * none is written outside DIR; the exit code is 0 or the documented 73, never 70.
 */
import { once } from 'node:events';
import { mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EXIT } from '../../src/client/exit-codes.ts';
import { planDownloads, prepareTarget } from '../../src/client/download.ts';
import type { ArtifactView } from '../../src/protocol/schemas.ts';
import { useCliHarness } from './harness.ts';

const h = useCliHarness('expo-cli-dl-');

async function cli(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const proc = h.spawnCli(args);
  let out = '';
  let err = '';
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const [code] = (await once(proc, 'close')) as [number | null];
  return { code, out, err };
}

/** A build whose worker stored these artifacts (name → content). */
async function buildWith(files: Record<string, string>): Promise<string> {
  const b = await h.c.submit({ artifacts: ['**/*'] });
  const w = await h.c.enrol('mac-1');
  const claim = (await h.c.poll('mac-1', w.auth))!;
  for (const [name, content] of Object.entries(files)) {
    const put = await h.c.app.inject({
      method: 'PUT',
      url: `/api/v1/builds/${b.id}/artifacts/${name}`,
      headers: { ...w.auth, 'x-expo-lease': claim.lease, 'content-type': 'application/octet-stream' },
      payload: Buffer.from(content),
    });
    expect(put.statusCode, put.body).toBe(201);
  }
  return b.id;
}

describe('expo-worker artifacts --download', () => {
  it('artifacts a and a/App.ipa (a file/folder name clash) are both saved, a as a.artifact, instead of EEXIST and exit 70', async () => {
    const id = await buildWith({ a: 'the file a', 'a/App.ipa': 'the ipa', 'a.artifact': 'a real a.artifact' });
    const dir = join(h.home, 'dl');
    const r = await cli(['artifacts', id, '--download', dir]);
    expect(r.code, r.err).toBe(EXIT.ok);
    expect(readFileSync(join(dir, 'a', 'App.ipa'), 'utf8')).toBe('the ipa');
    expect(readFileSync(join(dir, 'a.artifact'), 'utf8')).toBe('a real a.artifact');
    expect(readFileSync(join(dir, 'a.artifact-2'), 'utf8')).toBe('the file a');
    expect(r.err).toContain(`saved a as ${join(dir, 'a.artifact-2')}: 'a' is also the folder of 'a/App.ipa'\n`);
    // Downloading again into the same folder works too (the files are replaced).
    const again = await cli(['artifacts', id, '--download', dir]);
    expect(again.code, again.err).toBe(EXIT.ok);
  });

  it('a symlink or a file in the way inside DIR refuses that artifact only (exit 73), never writes through the link', async () => {
    const id = await buildWith({ 'ios/App.ipa': 'ipa', 'out/x.zip': 'zip', 'report.txt': 'report', 'notes.txt': 'notes' });
    const dir = join(h.home, 'dl');
    const elsewhere = join(h.home, 'elsewhere');
    mkdirSync(dir);
    mkdirSync(elsewhere);
    symlinkSync(elsewhere, join(dir, 'ios'));
    writeFileSync(join(dir, 'out'), 'a file where the folder out goes');
    // A link planted at the final name and at the temporary name: neither is followed.
    writeFileSync(join(elsewhere, 'victim'), 'untouched');
    symlinkSync(join(elsewhere, 'victim'), join(dir, 'notes.txt'));
    symlinkSync(join(elsewhere, 'victim'), join(dir, 'report.txt.partial'));
    const r = await cli(['artifacts', id, '--download', dir]);
    expect(r.code, r.err).toBe(EXIT.notSaved);
    expect(r.err).toContain(`expo-worker artifacts: artifact 'ios/App.ipa' not saved: ios in ${dir} is a symbolic link (refused: it could point anywhere)\n`);
    expect(r.err).toContain(`expo-worker artifacts: artifact 'out/x.zip' not saved: out in ${dir} is a file, not a folder\n`);
    expect(r.err).toContain(`expo-worker artifacts: artifact 'notes.txt' not saved: notes.txt in ${dir} is a symbolic link (refused: it could point anywhere)\n`);
    expect(r.err).toContain(`expo-worker artifacts: 3 of 4 artifacts not saved (above); the others are in ${dir}\n`);
    expect(r.err).not.toContain('unexpected');
    expect(readFileSync(join(dir, 'report.txt'), 'utf8')).toBe('report');
    expect(readdirSync(elsewhere)).toEqual(['victim']);
    expect(readFileSync(join(elsewhere, 'victim'), 'utf8')).toBe('untouched');
    // DIR itself a file: said so, 73, no stack trace.
    const file = join(h.home, 'a-file');
    writeFileSync(file, 'x');
    const onFile = await cli(['artifacts', id, '--download', file]);
    expect(onFile.code, onFile.err).toBe(EXIT.notSaved);
    expect(onFile.err).toBe(`expo-worker artifacts: cannot create the folder ${file} (EEXIST): nothing saved\n`);
  });

  it('a name outside DIR (from a controller that let it through) is refused by a resolved path, not a string prefix', async () => {
    const view = (name: string): ArtifactView => ({ name, attempt: 1, sizeBytes: 1, sha256: '0'.repeat(64), createdAt: '2026-01-01T00:00:00.000Z' });
    const { targets, refused } = planDownloads(['../dl-evil/x', '/etc/passwd', 'a/./b', 'a//b', 'ok.txt'].map(view));
    expect(targets.map((t) => t.relPath)).toEqual(['ok.txt']);
    expect(refused.map((r) => r.name)).toEqual(['../dl-evil/x', '/etc/passwd', 'a/./b', 'a//b']);
    // `dl-evil` starts with `dl`: the old startsWith check let `../dl-evil/x` through.
    expect(await prepareTarget(join(h.home, 'dl'), '../dl-evil/x')).toEqual({ why: `it points outside ${join(h.home, 'dl')}` });
  });
});
