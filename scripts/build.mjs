#!/usr/bin/env node
// Bundles src/cli/main.ts into dist/ with esbuild, so `bin/ferry` starts about as fast as plain node
// (it runs once per WAL segment as archive_command). Native and optional modules stay external.
import { build } from 'esbuild';
import { rmSync } from 'node:fs';

rmSync('dist', { recursive: true, force: true });
await build({
  entryPoints: { ferry: 'src/cli/main.ts', 'codec-worker': 'src/codec/worker.ts' },
  outdir: 'dist',
  outExtension: { '.js': '.mjs' },
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  sourcemap: 'linked',
  external: ['zstd-napi', 'pg-native', 'pino', 'thread-stream'],
  banner: { js: "import { createRequire as __ferryRequire } from 'node:module'; const require = __ferryRequire(import.meta.url);" },
  logLevel: 'warning',
});
