/**
 * FsStorage: the conformance suite over a bare FsStorage and over the full
 * stack openStorage builds for a directory, plus fs-only behaviour (layout on
 * disk, temp files, key order across directories, error mapping).
 */
import { mkdtemp, readdir, rm, writeFile, mkdir, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { FsStorage } from '../../src/storage/fs.ts';
import { openStorage } from '../../src/storage/open.ts';
import { NotFoundError, StorageError } from '../../src/util/errors.ts';
import { storageConformance } from './conformance.ts';

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'ferry-fs-'));
}

storageConformance('fs', async () => {
  const dir = await tempDir();
  return { storage: new FsStorage(dir), cleanup: () => rm(dir, { recursive: true, force: true }) };
});

storageConformance('fs via openStorage (retry + limit)', async () => {
  const dir = await tempDir();
  return { storage: openStorage(pathToFileURL(join(dir, 'repo')).href), cleanup: () => rm(dir, { recursive: true, force: true }) };
});

describe('FsStorage specifics', () => {
  let dir: string;
  let fs: FsStorage;
  before(async () => {
    dir = await tempDir();
    fs = new FsStorage(join(dir, 'new', 'root'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('creates the root on first put and stores each key as a file', async () => {
    await fs.put('data/ab/abcdef', Buffer.from('blob'));
    assert.deepEqual(await readdir(join(dir, 'new', 'root', 'data', 'ab')), ['abcdef']);
    assert.equal(fs.location, join(dir, 'new', 'root'));
  });

  it('reads a range into the buffer it is given when the range fits (a restore\'s lent range buffers)', async () => {
    const data = Buffer.from(Array.from({ length: 4000 }, (_, i) => (i * 11) % 253));
    await fs.put('into/pack', data);
    const into = Buffer.from(new SharedArrayBuffer(3000));
    for (const immutable of [true, false]) {
      into.fill(0);
      const got = await fs.get('into/pack', { offset: 500, length: 2000, immutable, into });
      assert.equal(got.buffer, into.buffer, 'a view of the given buffer');
      assert.equal(got.byteOffset, 0);
      assert.ok(got.equals(data.subarray(500, 2500)));
      assert.ok(into.subarray(2000).equals(Buffer.alloc(1000)), 'nothing written past the range');
    }
  });

  it('leaves no temp files behind and never lists them', async () => {
    await fs.put('tmp/a', Buffer.from('1'));
    await fs.put('tmp/a', Buffer.from('2'));
    await fs.put('tmp/b', Buffer.from('3'), { ifNoneMatch: true });
    await assert.rejects(fs.put('tmp/b', Buffer.from('4'), { ifNoneMatch: true }));
    assert.deepEqual((await readdir(join(fs.location, 'tmp'))).sort(), ['a', 'b']);
    await writeFile(join(fs.location, 'tmp', '.tmp-deadbeef'), 'partial');
    const page = await fs.listPage('tmp/');
    assert.deepEqual(page.objects.map((o) => o.key), ['tmp/a', 'tmp/b']);
    await assert.rejects(fs.get('tmp/.tmp-deadbeef'), StorageError);
  });

  it('lists in key order across files and directories, with any page size', async () => {
    // '.' < '/' < '0': a directory must sort as "name/" for the cursor to work.
    const keys = ['ord/a.x', 'ord/a/1', 'ord/a/2', 'ord/a0', 'ord/b', 'ord/b c/d', 'ord/b-c', 'ord/bc/é', 'ord/z'];
    for (const k of keys) await fs.put(k, Buffer.from(k));
    const sorted = [...keys].sort();
    for (const pageSize of [1, 2, 3, 100]) {
      const seen: string[] = [];
      let cursor: string | undefined;
      do {
        const page = await fs.listPage('ord/', cursor, pageSize);
        seen.push(...page.objects.map((o) => o.key));
        cursor = page.cursor;
      } while (cursor !== undefined);
      assert.deepEqual(seen, sorted, `pageSize ${pageSize}`);
    }
  });

  it('reports a file blocking a directory as a storage error, not as missing', async () => {
    await fs.put('block/a', Buffer.from('file'));
    await assert.rejects(fs.put('block/a/b', Buffer.from('x')), (e) => e instanceof StorageError && !(e instanceof NotFoundError));
    await assert.rejects(fs.get('block/a/b'), NotFoundError);
    assert.equal(await fs.stat('block/a/b'), undefined);
  });

  it('maps permission errors to a StorageError naming the path, with a hint', async (t) => {
    if (process.getuid?.() === 0) {
      t.diagnostic('running as root: permissions are not enforced, checked by message only');
    }
    const locked = join(dir, 'locked');
    await mkdir(locked);
    await chmod(locked, 0o500);
    try {
      const ro = new FsStorage(locked);
      const err = await ro.put('x/y', Buffer.from('z')).then(
        () => undefined,
        (e: unknown) => e,
      );
      if (process.getuid?.() !== 0) {
        assert.ok(err instanceof StorageError, String(err));
        assert.equal(err.transient, false);
        assert.match(err.message, /permission denied/);
        assert.ok(err.message.includes(locked), err.message);
        assert.ok(err.hint);
      }
    } finally {
      await chmod(locked, 0o700);
    }
  });
});

describe('FsStorage directory cache', () => {
  it('recreates a directory removed behind its back', async () => {
    const dir = await tempDir();
    try {
      const fs = new FsStorage(dir);
      await fs.put('data/ab/one', Buffer.from('1'));
      await rm(join(dir, 'data'), { recursive: true });
      await fs.put('data/ab/two', Buffer.from('2'));
      assert.equal((await fs.get('data/ab/two')).toString(), '2');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
