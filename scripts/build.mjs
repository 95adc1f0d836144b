#!/usr/bin/env node
// Bundles the command line into dist/ with esbuild, so `bin/ferry` starts about as fast as plain node
// (it runs once per WAL segment as archive_command):
//   dist/ferry.mjs       every command (src/cli/ferry.ts), ES modules split by command group;
//   dist/ferry-wal.cjs   `wal push` and `wal fetch` alone: dist/ferry-wal-main.cjs (src/cli/ferry-wal.ts),
//                        one CommonJS file, which starts sooner (see that file), loaded with a V8 code
//                        cache by src/cli/cached-entry.ts; the cache is made here by a warm-up push and
//                        fetch in a throwaway repository;
//   dist/codec-worker.mjs  the codec worker threads.
// Native and optional modules stay external.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

// A fresh clone has no node_modules yet: say how to get them instead of ERR_MODULE_NOT_FOUND.
try {
  createRequire(import.meta.url).resolve('esbuild');
} catch {
  process.stderr.write('build: esbuild is not installed (no node_modules yet)\nhint: run `node scripts/setup.mjs` (or `npm test` / `npm run demo`, which run it): it installs the dependencies and builds\n');
  process.exit(2);
}
const { build } = await import('esbuild');

// Build beside dist/ and swap it in, so a running `bin/ferry` (a test, archive_command) never
// finds dist/ half-written or missing.
const out = `dist.tmp-${process.pid}`;
rmSync(out, { recursive: true, force: true });
const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  sourcemap: 'linked',
  logLevel: 'warning',
};
const native = ['zstd-napi', '@napi-rs/blake-hash', 'pg-native', 'pino', 'thread-stream'];
await build({
  ...common,
  entryPoints: { ferry: 'src/cli/ferry.ts', 'codec-worker': 'src/codec/worker.ts' },
  outdir: out,
  outExtension: { '.js': '.mjs' },
  splitting: true,
  format: 'esm',
  external: native,
  banner: { js: "import { createRequire as __ferryRequire } from 'node:module'; const require = __ferryRequire(import.meta.url);" },
});
await build({
  ...common,
  entryPoints: { 'ferry-wal-main': 'src/cli/ferry-wal.ts', 'ferry-wal': 'src/cli/cached-entry.ts' },
  outdir: out,
  outExtension: { '.js': '.cjs' },
  format: 'cjs',
  // Loaded from node_modules only when a repository on S3 or a config file needs them.
  external: [...native, '@aws-sdk/*', '@smithy/*', 'yaml', 'zod'],
  define: { 'import.meta.url': '__ferryModuleUrl' },
  banner: { js: "const __ferryModuleUrl = require('node:url').pathToFileURL(__filename).href;" },
});
warmCodeCache(out);
rmSync('dist.old', { recursive: true, force: true });
try {
  renameSync('dist', 'dist.old');
} catch {
  /* first build */
}
renameSync(out, 'dist');
rmSync('dist.old', { recursive: true, force: true });

/**
 * Writes dist/ferry-wal-main.cjs.cache: a push and a fetch of a made-up segment through
 * ferry-wal.cjs with FERRY_CODE_CACHE=write, in a throwaway repository. Without it (a
 * failure is reported, not fatal) those commands compile their code on every run.
 */
function warmCodeCache(outDir) {
  const dir = resolve(outDir);
  const work = mkdtempSync(join(tmpdir(), 'ferry-build-'));
  try {
    const env = { ...process.env, FERRY_REPO: join(work, 'repo'), FERRY_KEY_FILE: join(work, 'key'), FERRY_CODE_CACHE: 'write' };
    delete env.FERRY_CONFIG;
    const seg = join(work, '000000010000000000000001');
    const data = Buffer.alloc(16 << 20);
    for (let o = 64; o < data.length; o += 8192) randomBytes(1000).copy(data, o);
    writeFileSync(seg, data);
    const steps = [
      [join(dir, 'ferry.mjs'), 'init', '--key-file', env.FERRY_KEY_FILE],
      [join(dir, 'ferry-wal.cjs'), 'wal', 'push', seg],
      [join(dir, 'ferry-wal.cjs'), 'wal', 'fetch', '000000010000000000000001', join(work, 'fetched')],
    ];
    for (const argv of steps) {
      const r = spawnSync(process.execPath, argv, { env, cwd: work, encoding: 'utf8' });
      if (r.status !== 0) {
        process.stderr.write(`build: warning: no code cache for ferry-wal.cjs (${argv.slice(1, 3).join(' ')} failed: ${(r.stderr || r.error?.message || '').trim().split('\n')[0]})\n`);
        rmSync(join(dir, 'ferry-wal-main.cjs.cache'), { force: true });
        return;
      }
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
