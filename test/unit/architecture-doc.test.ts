/**
 * docs/architecture.md stays true to the code: its rooms table lists exactly the folders of src/,
 * and each room's "may import" cell is the list the dependency checker enforces
 * (.dependency-cruiser.cjs).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..', '..');
const { ROOMS } = createRequire(import.meta.url)(join(ROOT, '.dependency-cruiser.cjs')) as { ROOMS: Record<string, string[]> };

/** room → its "may import" cell, from the rows of the doc's rooms table (`| `src/x/` | … | … |`). */
function docRooms(): Record<string, string[]> {
  const rooms: Record<string, string[]> = {};
  for (const line of readFileSync(join(ROOT, 'docs', 'architecture.md'), 'utf8').split('\n')) {
    const m = /^\| `src\/([^`/]+)\/` \|.*\| ([^|]+) \|$/.exec(line);
    if (m === null) continue;
    rooms[m[1]!] = m[2]!.trim() === '—' ? [] : [...m[2]!.matchAll(/`([^`]+)`/g)].map((x) => x[1]!);
  }
  return rooms;
}

const sorted = (rooms: Record<string, string[]>): Record<string, string[]> =>
  Object.fromEntries(Object.entries(rooms).map(([room, imports]) => [room, [...imports].sort()]));

describe('docs/architecture.md', () => {
  it('lists exactly the folders of src/ as rooms', () => {
    const folders = readdirSync(join(ROOT, 'src'), { withFileTypes: true })
      .filter((d) => d.isDirectory())
      .map((d) => d.name)
      .sort();
    expect(Object.keys(docRooms()).sort()).toEqual(folders);
    expect(Object.keys(ROOMS).sort()).toEqual(folders);
  });

  it('gives each room the imports .dependency-cruiser.cjs allows it', () => {
    expect(sorted(docRooms())).toEqual(sorted(ROOMS));
  });
});
