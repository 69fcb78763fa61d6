// One lint configuration for the whole repository (typescript-eslint on ESLint 10 flat config).
import js from '@eslint/js'
import tseslint from 'typescript-eslint'

const restrictedInternals = {
  patterns: [
    {
      group: ['@portcullis/*/src/*', '@portcullis/*/dist/*', '**/packages/*/src/*'],
      message: 'Import other packages by their public entry points only (STYLE rule 9).',
    },
  ],
}

export default tseslint.config(
  {
    ignores: ['**/node_modules/**', '**/dist/**', '**/.data/**', 'test/fixtures/**', 'coverage/**'],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      ecmaVersion: 2023,
      sourceType: 'module',
      globals: {
        console: 'readonly',
        process: 'readonly',
        Buffer: 'readonly',
        URL: 'readonly',
        fetch: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setInterval: 'readonly',
        clearInterval: 'readonly',
        setImmediate: 'readonly',
        performance: 'readonly',
        TextDecoder: 'readonly',
        TextEncoder: 'readonly',
        AbortController: 'readonly',
        NodeJS: 'readonly',
      },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
      '@typescript-eslint/naming-convention': [
        'error',
        { selector: 'typeParameter', format: ['PascalCase'], prefix: ['T'] },
      ],
      '@typescript-eslint/no-explicit-any': 'error',
    },
  },
  {
    files: ['packages/core/src/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [
            'express',
            'koa',
            'fastify',
            'ioredis',
            'pg',
            'passport',
            'better-sqlite3',
            'node:http',
            'http',
          ].map((name) => ({ name, message: 'Core names no framework or driver (STYLE rule 7).' })),
        },
      ],
      'no-console': 'error',
    },
  },
  {
    files: ['packages/!(core)/src/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', restrictedInternals] },
  },
  {
    files: ['test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unused-expressions': 'off',
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
)
