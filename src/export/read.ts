/**
 * Reading an export back: its blobs in order (each authenticated and checked
 * against its id), the whole stream checked against the SHA-256 and size pg_dump's
 * output had, to a file (`export get`) or a pipe (`export restore`).
 */
import { createHash } from 'node:crypto';
import { open, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Manifest } from '../repo/manifest.ts';
import type { Repository } from '../repo/repository.ts';
import { loadTree } from '../repo/tree.ts';
import { FerryError, IntegrityError } from '../util/errors.ts';
import { resolveExport, type ExportMeta, type ExportRef } from './meta.ts';

/** Blobs fetched ahead of the one being written. */
const AHEAD = 4;

/**
 * Calls `write` with the export's bytes in order and checks the whole against the
 * recorded size and SHA-256 (IntegrityError on a mismatch, after the last write).
 */
export async function streamExport(repo: Repository, manifest: Manifest, write: (b: Buffer) => Promise<void>): Promise<{ size: number; sha256: string }> {
  const meta = manifest.meta as unknown as ExportMeta;
  await repo.loadIndex();
  const node = (await loadTree(repo, manifest.tree)).find((n) => n.type === 'file' && n.path === meta.file);
  if (!node) throw new IntegrityError(`export of ${meta.database} at ${meta.time} has no file ${meta.file} in its tree`);
  const ids = node.blobs ?? [];
  const sha = createHash('sha256');
  let size = 0;
  const queue: Promise<Buffer>[] = [];
  let next = 0;
  const fill = () => {
    while (next < ids.length && queue.length < AHEAD) {
      const id = ids[next++];
      const p = repo.loadBlob(id);
      p.catch(() => undefined); // observed in order below
      queue.push(p);
    }
  };
  fill();
  while (queue.length) {
    const b = await queue.shift()!;
    fill();
    sha.update(b);
    size += b.length;
    await write(b);
  }
  const sha256 = sha.digest('hex');
  if (size !== meta.size || sha256 !== meta.sha256) {
    throw new IntegrityError(`export of ${meta.database} at ${meta.time} reads back as ${size} bytes with SHA-256 ${sha256.slice(0, 16)}, not the ${meta.size} bytes (${meta.sha256.slice(0, 16)}) pg_dump wrote`, {
      hint: 'run `ferry repo check --read-data`',
    });
  }
  return { size, sha256 };
}

/** Writes an export to `path` (a new file unless `force`), atomically: a temporary file, fsynced, then renamed. */
export async function writeExportFile(ref: ExportRef, path: string, force = false): Promise<{ size: number; sha256: string }> {
  if (!force) {
    const st = await stat(path).catch(() => undefined);
    if (st) throw new FerryError(`${path} already exists; export get would overwrite it`, { hint: 'choose another --out path, or pass --force to overwrite it' });
  }
  const tmp = join(dirname(path), `.${basename(path)}.ferry-${ref.repo.clock.random(6).toString('hex')}`);
  let fh: FileHandle | undefined;
  try {
    fh = await open(tmp, 'wx', 0o600);
  } catch (e) {
    throw new FerryError(`cannot create a file in ${dirname(path)}: ${(e as Error).message}`);
  }
  try {
    const out = fh;
    const r = await streamExport(ref.repo, ref.manifest, async (b) => {
      let at = 0;
      while (at < b.length) at += (await out.write(b, at, b.length - at)).bytesWritten;
    });
    await fh.sync();
    await fh.close();
    fh = undefined;
    await rename(tmp, path);
    return r;
  } catch (e) {
    await fh?.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw e;
  }
}

/**
 * Writes export `id` (an id, a unique prefix or `latest`) to a new file at `path`
 * that pg_restore reads: byte for byte what pg_dump wrote. Looks in `repo` and, when
 * given, in its cold tier. Refuses to overwrite an existing file unless `force`.
 */
export async function exportToFile(repo: Repository, id: string, path: string, opts: { cold?: Repository; force?: boolean } = {}): Promise<void> {
  const ref = await resolveExport({ hot: repo, cold: opts.cold }, id);
  await writeExportFile(ref, path, !!opts.force);
}
