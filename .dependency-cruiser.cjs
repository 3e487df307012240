// The dependency rules of src/ (`npm run lint:deps`; docs/architecture.md draws them).
//
// Each folder of src/ is a room, and ROOMS says which other rooms each may import. The list is a
// DAG by construction: a room only names rooms above it in the list (checked below, at load), so
// no cycle between rooms can be written. On top of that no file cycle at all, type-only imports
// included (`tsPreCompilationDeps`: an `import type` counts as much as any other), and no cycle
// between two folders (within a room too; a folder and its own subfolder, like controller and
// controller/routes, are one place to dependency-cruiser and may use each other). A folder of src/ that is not in ROOMS fails: a new
// room is added here first, with its place in the order.
'use strict';

/**
 * room → the rooms it may import (besides itself, Node's built-ins and npm packages). In
 * dependency order: each names only rooms listed before it.
 */
const ROOMS = {
  protocol: [],
  sys: ['protocol'],
  health: ['protocol', 'sys'],
  vm: ['protocol', 'sys', 'health'],
  monitor: ['protocol', 'sys', 'health', 'vm'],
  github: ['protocol', 'sys'],
  agent: ['protocol', 'sys', 'health', 'vm', 'monitor'],
  // The one-shot host tools read the agent's config file (doctor checks what the daemon will
  // run with) and nothing else of the daemon — but the host caches' disk layout, which
  // `expo-worker cache` lists and clears.
  host: ['protocol', 'sys', 'health', 'vm', 'monitor', 'agent/config.ts', 'agent/caches.ts'],
  controller: ['protocol', 'sys', 'monitor', 'github'],
  client: ['protocol', 'sys'],
};

/** `src/cli.ts`, the one entry point, may load any room. */
const ENTRY = 'src/cli.ts';

const names = Object.keys(ROOMS);
names.forEach((room, i) => {
  for (const target of ROOMS[room]) {
    const to = target.split('/')[0];
    if (!names.slice(0, i).includes(to)) throw new Error(`.dependency-cruiser.cjs: ${room} may only import rooms listed before it, not ${target}`);
  }
});

const esc = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
/** The path regex of an allowed target: a whole room (`vm`) or one file of it (`agent/config.ts`). */
const targetPath = (t) => (t.endsWith('.ts') ? `^src/${esc(t)}$` : `^src/${esc(t)}/`);
const known = `^src/(${names.map(esc).join('|')})/|^${esc(ENTRY)}$`;

module.exports = {
  forbidden: [
    {
      name: 'no-file-cycle',
      comment: 'No file may reach itself through its imports, type-only ones included.',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'no-folder-cycle',
      comment: 'No folder may reach itself through the imports of its files (a folder and its own subfolders count as one).',
      severity: 'error',
      scope: 'folder',
      from: {},
      to: { circular: true },
    },
    {
      name: 'no-unknown-room',
      comment: 'Every file of src/ lives in a room listed in .dependency-cruiser.cjs (or is src/cli.ts).',
      severity: 'error',
      from: { path: '^src/', pathNot: known },
      to: {},
    },
    {
      name: 'no-unresolvable',
      comment: 'An import that resolves to nothing is a broken import.',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  allowed: [
    {
      comment: "Node's built-ins and npm packages, from anywhere.",
      from: {},
      to: { dependencyTypes: ['core', 'npm', 'npm-dev', 'npm-optional', 'npm-peer', 'npm-no-pkg'] },
    },
    {
      comment: 'Within a room, anything.',
      from: { path: '^src/([^/]+)/' },
      to: { path: '^src/$1/' },
    },
    ...names.map((room) => ({
      comment: `${room} may import ${ROOMS[room].join(', ') || 'no other room'}.`,
      from: { path: `^src/${esc(room)}/` },
      to: { path: ROOMS[room].length === 0 ? '^$' : ROOMS[room].map(targetPath) },
    })),
    {
      comment: 'The entry point loads any room.',
      from: { path: `^${esc(ENTRY)}$` },
      to: { path: `^src/(${names.map(esc).join('|')})/` },
    },
  ],
  allowedSeverity: 'error',
  options: {
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    doNotFollow: { path: 'node_modules' },
    // ESM packages (conf, typebox) resolve through their `exports` under these conditions.
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'node', 'default'], mainFields: ['module', 'main', 'types'] },
    exclude: { path: '^(node_modules|dist)/' },
  },
};

// For the test that holds docs/architecture.md to this table. Not enumerable: dependency-cruiser
// refuses a configuration with keys of its own.
Object.defineProperty(module.exports, 'ROOMS', { value: ROOMS, enumerable: false });
