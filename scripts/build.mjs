#!/usr/bin/env node
// Bundles src/cli/main.ts into dist/ with esbuild, so `bin/ferry` starts about as fast as plain node
// (it runs once per WAL segment as archive_command). Native and optional modules stay external.
import { build } from 'esbuild';
import { renameSync, rmSync } from 'node:fs';

// Build beside dist/ and swap it in, so a running `bin/ferry` (a test, archive_command) never
// finds dist/ half-written or missing.
const out = `dist.tmp-${process.pid}`;
rmSync(out, { recursive: true, force: true });
await build({
  entryPoints: { ferry: 'src/cli/main.ts', 'codec-worker': 'src/codec/worker.ts' },
  outdir: out,
  outExtension: { '.js': '.mjs' },
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  sourcemap: 'linked',
  external: ['zstd-napi', '@napi-rs/blake-hash', 'pg-native', 'pino', 'thread-stream'],
  banner: { js: "import { createRequire as __ferryRequire } from 'node:module'; const require = __ferryRequire(import.meta.url);" },
  logLevel: 'warning',
});
rmSync('dist.old', { recursive: true, force: true });
try {
  renameSync('dist', 'dist.old');
} catch {
  /* first build */
}
renameSync(out, 'dist');
rmSync('dist.old', { recursive: true, force: true });
