/** Chunking of data-directory files: fixed page chunks, and a parent's older chunk size kept. */
import { after, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { backupTree } from '../../src/repo/backup.ts';
import { FixedChunker } from '../../src/repo/chunker.ts';
import { PAGE_CHUNK, chunkerFor } from '../../src/postgres/layout.ts';
import { loadTree } from '../../src/repo/tree.ts';
import { tempRepo } from '../harness/repo.ts';
import { makeTempDir } from '../harness/tmp.ts';

const cleanups: (() => void)[] = [];
after(() => cleanups.forEach((c) => c()));

const lengthsOf = (chunker: ReturnType<typeof chunkerFor>, size: number) => {
  const data = randomBytes(size);
  const { chunks } = chunker.split(data, true);
  return chunks.map((c) => c.length);
};

it('cuts relation files into fixed page chunks, other files with the fallback', () => {
  assert.equal(PAGE_CHUNK, 128 * 1024);
  assert.deepEqual(lengthsOf(chunkerFor('base/5/16396', () => assert.fail('no fallback for a relation file')), 3 * PAGE_CHUNK + 8192), [PAGE_CHUNK, PAGE_CHUNK, PAGE_CHUNK, 8192]);
  const fallback = new FixedChunker(1000);
  assert.equal(chunkerFor('postgresql.conf', () => fallback), fallback);
  // A parent copy cut into 64 KiB page chunks (what Ferry did before) is cut that way again.
  const old = [65536, 65536, 65536, 16384];
  assert.deepEqual(lengthsOf(chunkerFor('base/5/16396', () => fallback, old), 4 * 65536), [65536, 65536, 65536, 65536]);
  // Lengths that are not fixed page chunks (content-defined, or not whole pages) do not count.
  for (const odd of [[70000, 65536, 100], [65536, 32768, 65536, 8192], [65536 + 100, 65536 + 100, 10]]) {
    assert.deepEqual(lengthsOf(chunkerFor('base/5/16396', () => fallback, odd), 2 * PAGE_CHUNK), [PAGE_CHUNK, PAGE_CHUNK], JSON.stringify(odd));
  }
});

it('a snapshot whose parent cut a file into 64 KiB chunks reuses those chunks instead of storing the file again', async () => {
  const { repo, dir } = await tempRepo();
  cleanups.push(() => dir.cleanup());
  const src = makeTempDir('ferry-layout-');
  cleanups.push(() => src.cleanup());
  await mkdir(join(src.path, 'base', '5'), { recursive: true });
  const file = join(src.path, 'base', '5', '16396');
  const data = randomBytes(40 * 8192);
  await writeFile(file, data);
  const parent = await backupTree(repo, { root: src.path, kind: 'postgres', asset: 'pg', chunkerFor: () => new FixedChunker(65536) });
  // The file changes (new mtime): it is read again; all its chunks are certainly unchanged here.
  data[100] ^= 1;
  await writeFile(file, data);
  const next = await backupTree(repo, {
    root: src.path,
    kind: 'postgres',
    asset: 'pg',
    parent,
    chunkerFor: (n, prev) => chunkerFor(n.path, () => repo.newChunker(), prev?.lengths),
    unchanged: (_n, offset) => offset > 0,
  });
  const node = (await loadTree(repo, next.manifest.tree)).find((n) => n.path === 'base/5/16396')!;
  assert.deepEqual(node.lengths, [65536, 65536, 65536, 65536, 65536]);
  assert.equal(next.manifest.stats.chunksReused, 4);
  assert.ok(next.manifest.stats.storedBytes < 2 * 65536, `stored ${next.manifest.stats.storedBytes} bytes`);
});
