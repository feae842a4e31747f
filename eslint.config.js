// Lint: fastify's own style (neostandard) for the whole tree, plus typescript-eslint's
// type-checked rules on the TypeScript. `npm test` runs it with --max-warnings 0.
import neostandard from 'neostandard'
import tseslint from 'typescript-eslint'

export default [
  { ignores: ['dist/**', 'node_modules/**', '.cache/**', '.tap/**', 'certs/**', 'charts/**'] },
  ...neostandard({ ts: true }),
  ...tseslint.configs.recommendedTypeChecked.map(c => ({ ...c, files: ['**/*.ts'] })),
  {
    files: ['**/*.ts'],
    languageOptions: {
      parserOptions: {
        // bench/ and scripts/ have no tsconfig of their own (test/tsconfig.json type-checks bench/):
        // lint them under that one instead of failing to parse them.
        projectService: {
          allowDefaultProject: ['bench/*.ts', 'scripts/*.ts'],
          defaultProject: 'test/tsconfig.json',
          maximumDefaultProjectFileMatchCount_THIS_WILL_SLOW_DOWN_LINTING: 32,
        },
        tsconfigRootDir: import.meta.dirname,
      },
    },
  },
  {
    files: ['test/**/*.ts'],
    rules: {
      // tap tracks these promises itself: a subtest is queued and awaited by its parent, and an
      // assertion on a promise is held with waitOn() until it settles. Any other promise still counts.
      '@typescript-eslint/no-floating-promises': ['error', {
        allowForKnownSafeCalls: [
          { from: 'package', package: '@tapjs/test', name: ['test', 'todo'] },
          { from: 'package', package: '@tapjs/asserts', name: ['rejects', 'resolves', 'resolveMatch'] },
        ],
      }],
      // tap awaits the promise an async callback returns: that is how a subtest ends without t.end(),
      // so `async t => { … }` with no await inside is the intended form, not a forgotten await.
      '@typescript-eslint/require-await': 'off',
    },
  },
  {
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: {
      // Tests and benchmarks read wire data (AdmissionReviews, API-server objects, rendered YAML, parsed
      // logs, load-generator results) whose shape is what their assertions and tables check: a cast
      // would only silence the rule. src/ keeps the full set.
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
    },
  },
  {
    // `void promise;` is how no-floating-promises asks for a promise left running on purpose to be marked.
    rules: { 'no-void': ['error', { allowAsStatement: true }] },
  },
  { linterOptions: { reportUnusedDisableDirectives: 'error' } },
]
