// Lint: typescript-eslint's recommended rules. Which folder of src/ may import which, and the
// ban on import cycles (type-only ones included), are dependency-cruiser's job:
// .dependency-cruiser.cjs, run by `npm run lint:deps`.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

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
  {
    // .dependency-cruiser.cjs: dependency-cruiser loads its configuration as CommonJS.
    files: ['**/*.cjs'],
    languageOptions: { sourceType: 'commonjs', globals: { module: 'writable', require: 'readonly' } },
  },
);
