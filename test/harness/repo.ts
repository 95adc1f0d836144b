/**
 * Repositories and data trees for tests: a throwaway fs repository, a tree with
 * the awkward cases (empty files, symlinks, odd names, nested dirs), and a tree
 * digest to compare a restore with its source.
 */
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Repository } from '../../src/repo/repository.ts';
import { FsStorage } from '../../src/storage/fs.ts';
import type { Storage } from '../../src/storage/types.ts';
import { walkTree } from '../../src/repo/backup.ts';
import { makeTempDir, type TempDir } from './tmp.ts';

export const TEST_PASSPHRASE = 'test passphrase';
export const cred = { kind: 'passphrase' as const, passphrase: TEST_PASSPHRASE };

export async function tempRepo(storage?: Storage): Promise<{ repo: Repository; storage: Storage; dir: TempDir }> {
  const dir = makeTempDir('ferry-repo-');
  const st = storage ?? new FsStorage(join(dir.path, 'repo'));
  const repo = await Repository.init(st, cred, { packSize: 4 * 1024 * 1024 });
  return { repo, storage: st, dir };
}

/** Writes a tree with the awkward cases; returns nothing, the caller owns `root`. */
export async function makeAwkwardTree(root: string, opts: { bigFile?: number; smallFiles?: number } = {}): Promise<void> {
  await mkdir(join(root, 'a/b/c'), { recursive: true });
  await mkdir(join(root, 'empty-dir'), { recursive: true });
  await writeFile(join(root, 'empty'), '');
  await writeFile(join(root, 'a/b/c/deep.txt'), 'deep\n');
  await writeFile(join(root, 'name with spaces'), 'spaces\n');
  await writeFile(join(root, 'ünïcödé-文件-😀'), 'unicode\n');
  await writeFile(join(root, '-leading-dash'), 'dash\n');
  await writeFile(join(root, 'compressible.txt'), 'the same line again and again\n'.repeat(100_000));
  await writeFile(join(root, 'random.bin'), randomBytes(3 * 1024 * 1024 + 123));
  await writeFile(join(root, 'script.sh'), '#!/bin/sh\necho hi\n');
  await chmod(join(root, 'script.sh'), 0o755);
  await symlink('a/b/c/deep.txt', join(root, 'link-to-deep'));
  await symlink('/nonexistent/target', join(root, 'dangling-link'));
  const n = opts.smallFiles ?? 0;
  if (n) {
    await mkdir(join(root, 'small'), { recursive: true });
    for (let i = 0; i < n; i += 200) {
      await Promise.all(
        Array.from({ length: Math.min(200, n - i) }, (_, j) => {
          const d = join(root, 'small', `d${Math.floor((i + j) / 1000)}`);
          return mkdir(d, { recursive: true }).then(() => writeFile(join(d, `f${i + j}`), `file ${i + j}\n` + randomBytes((i + j) % 3000).toString('hex')));
        }),
      );
    }
  }
  if (opts.bigFile) await writeBigFile(join(root, 'big.bin'), opts.bigFile);
}

/** A large file of varied (incompressible, non-repeating) content, written in slices. */
export async function writeBigFile(path: string, size: number): Promise<void> {
  const { open } = await import('node:fs/promises');
  const fh = await open(path, 'w');
  try {
    const slice = 16 << 20;
    for (let off = 0; off < size; off += slice) {
      const n = Math.min(slice, size - off);
      await fh.write(randomBytes(n), 0, n, off);
    }
  } finally {
    await fh.close();
  }
}

/** A digest of a tree: paths, types, modes, symlink targets and file contents. */
export async function treeDigest(root: string): Promise<string> {
  const h = createHash('sha256');
  for (const n of await walkTree(root)) {
    h.update(`${n.path}\0${n.type}\0${n.path ? n.mode : 0}\0${n.target ?? ''}\0${n.type === 'file' ? n.size : 0}\0`);
    if (n.type === 'file') {
      if (n.size > 64 << 20) h.update(await fileHash(join(root, n.path)));
      else h.update(await readFile(join(root, n.path)));
    }
  }
  return h.digest('hex');
}

async function fileHash(path: string): Promise<string> {
  const { createReadStream } = await import('node:fs');
  const h = createHash('sha256');
  for await (const c of createReadStream(path, { highWaterMark: 8 << 20 })) h.update(c as Buffer);
  return h.digest('hex');
}
