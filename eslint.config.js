// Lint rules: typescript-eslint's recommended set, plus the project's layering rule
// (nothing below the CLI reads argv or exits the process).
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'bench/results/**'] },
  ...tseslint.configs.recommended,
  {
    files: ['src/**/*.ts', 'test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
  {
    files: ['src/**/*.ts'],
    ignores: ['src/cli/**', 'src/web/**'],
    rules: {
      'no-restricted-properties': [
        'error',
        { object: 'process', property: 'argv', message: 'only the CLI reads argv' },
        { object: 'process', property: 'exit', message: 'only the CLI exits the process' },
      ],
    },
  },
);
