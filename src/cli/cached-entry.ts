/**
 * dist/ferry-wal.cjs, which bin/ferry runs for `wal push` and `wal fetch`: loads the
 * bundle of those commands (dist/ferry-wal-main.cjs, from ferry-wal.ts) with the V8
 * code cache the build wrote beside it (ferry-wal-main.cjs.cache), so the functions a
 * push or a fetch runs are not compiled again in every process: about 8 ms of each
 * segment's start-up here.
 *
 * The cache file is the SHA-256 of the bundle's source, then V8's cached data. V8
 * itself checks only its own version, flags and the source's length, so the hash is
 * what keeps a stale cache from being used; a cache that does not match, or that V8
 * rejects, is ignored and the bundle compiles as usual. With FERRY_CODE_CACHE=write
 * (the build's warm-up runs) the cache is written when the command ends, covering
 * what it compiled and what the cache it was given already held.
 */
import { createHash } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Script } from 'node:vm';

const bundle = join(__dirname, 'ferry-wal-main.cjs');
const cacheFile = `${bundle}.cache`;
const source = readFileSync(bundle, 'utf8');
const hash = createHash('sha256').update(source).digest();
let cachedData: Buffer | undefined;
try {
  const c = readFileSync(cacheFile);
  if (c.subarray(0, hash.length).equals(hash)) cachedData = c.subarray(hash.length);
} catch {
  /* no cache: compile as usual */
}
const script = new Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, { filename: bundle, cachedData });
if (process.env.FERRY_CODE_CACHE === 'write') {
  process.on('exit', () => {
    const tmp = `${cacheFile}.${process.pid}.tmp`;
    writeFileSync(tmp, Buffer.concat([hash, script.createCachedData()]));
    renameSync(tmp, cacheFile);
  });
}
const module = { exports: {} };
(script.runInThisContext() as (...a: unknown[]) => void)(module.exports, createRequire(bundle), module, bundle, dirname(bundle));
