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
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
  },
  { linterOptions: { reportUnusedDisableDirectives: 'error' } },
]
