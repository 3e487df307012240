// Lint: typescript-eslint's recommended rules, plus the dependency direction of DESIGN.md:
// protocol imports nothing of ours; sys only protocol; vm, health and monitor never import agent
// or controller; agent and controller never import each other.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const layer = (files, forbidden) => ({
  files,
  rules: {
    'no-restricted-imports': [
      'error',
      {
        patterns: forbidden.map((dir) => ({
          group: [`**/${dir}/*`, `**/${dir}`],
          message: `DESIGN.md's dependency direction: this layer must not import src/${dir}.`,
        })),
      },
    ],
  },
});

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', '.tools/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-console': 'off',
    },
  },
  {
    // Tests and scripts read API answers ad hoc; the product code stays free of `any`.
    files: ['test/**', 'script/**', 'bench/**'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
  layer(['src/protocol/**'], ['sys', 'vm', 'health', 'monitor', 'agent', 'controller']),
  layer(['src/sys/**'], ['vm', 'health', 'monitor', 'agent', 'controller']),
  layer(['src/vm/**', 'src/health/**', 'src/monitor/**'], ['agent', 'controller']),
  layer(['src/agent/**'], ['controller']),
  layer(['src/controller/**'], ['agent']),
  // The people's commands talk to the controller over HTTP only: protocol and sys, nothing else.
  layer(['src/client/**'], ['vm', 'health', 'monitor', 'agent', 'controller']),
);
