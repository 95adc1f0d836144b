/**
 * Small snapshots built from content in hand (secrets) or one file made for the
 * occasion (a git bundle): the tree nodes are made here instead of by walking a
 * directory, so no plaintext is ever staged on disk, and the usual machinery stores
 * them (chunker, BlobSaver, saveTree, then the manifest: durability rule 2).
 */
import { createReadStream } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { fileChecksum } from '../codec/hash.ts';
import { newManifest, writeManifest, type Manifest } from '../repo/manifest.ts';
import type { Repository } from '../repo/repository.ts';
import { BlobSaver } from '../repo/saver.ts';
import { saveTree, type TreeNode } from '../repo/tree.ts';
import { IntegrityError, StorageError } from '../util/errors.ts';

/** A file of the snapshot: its content in memory, or a local file read in slices. */
export type Entry = { path: string; mode: number } & ({ data: Buffer } | { file: string });

export interface SaveOptions {
  kind: string;
  asset: string;
  /** What was protected (shown in listings): a path, or a description. */
  paths: string[];
  /** Directories of the tree (relative, without the root). */
  dirs?: string[];
  entries: Entry[];
  meta?: Record<string, unknown>;
  parent?: string;
}

export async function saveEntries(repo: Repository, opts: SaveOptions): Promise<{ id: string; manifest: Manifest }> {
  const started = repo.clock.now();
  await repo.loadIndex();
  const mtimeNs = `${BigInt(started) * 1_000_000n}`;
  const node = (path: string, type: 'file' | 'dir', mode: number): TreeNode => ({ path, type, mode, mtimeNs, size: 0, uid: 0, gid: 0, ino: 0 });
  const nodes: TreeNode[] = [node('', 'dir', 0o700), ...(opts.dirs ?? []).map((d) => node(d, 'dir', 0o700))];
  const saver = new BlobSaver(repo);
  let bytes = 0;
  for (const e of opts.entries) {
    const n = node(e.path, 'file', e.mode);
    const chunker = repo.newChunker();
    const saves: Promise<string>[] = [];
    const lengths: number[] = [];
    const take = (chunks: Buffer[]) => {
      for (const c of chunks) {
        lengths.push(c.length);
        n.size += c.length;
        saves.push(saver.save('data', c));
      }
    };
    if ('data' in e) take(chunker.push(e.data));
    else {
      try {
        for await (const slice of createReadStream(e.file, { highWaterMark: 4 << 20 })) {
          take(chunker.push(slice as Buffer));
          // Bounded memory: do not read far ahead of the saver.
          if (saves.length > 8) await Promise.all(saves.slice(0, -8));
        }
      } catch (err) {
        throw new StorageError(`cannot read ${e.file}: ${(err as Error).message}`);
      }
    }
    take(chunker.finish());
    n.blobs = await Promise.all(saves);
    n.lengths = lengths;
    n.checksum = fileChecksum(n.blobs);
    bytes += n.size;
    nodes.push(n);
  }
  nodes.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const tree = await saveTree(saver, repo, nodes);
  await saver.flush();
  const manifest = newManifest(repo, started, saver.stats, {
    kind: opts.kind,
    asset: opts.asset,
    paths: opts.paths,
    labels: [],
    ...(opts.parent ? { parent: opts.parent } : {}),
    tree,
    stats: {
      files: opts.entries.length,
      dirs: nodes.filter((n) => n.type === 'dir').length,
      symlinks: 0,
      bytes,
      filesRead: opts.entries.length,
      filesUnchanged: 0,
    },
    ...(opts.meta ? { meta: opts.meta } : {}),
  });
  const id = await writeManifest(repo, manifest);
  return { id, manifest };
}

/** A file node's content, read back (authenticated, checked against the ids). */
export async function readNode(repo: Repository, n: TreeNode): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (const id of n.blobs ?? []) parts.push(await repo.loadBlob(id));
  const data = Buffer.concat(parts);
  if (data.length !== n.size) throw new IntegrityError(`${n.path} read back ${data.length} bytes, the snapshot says ${n.size}`);
  return data;
}

/** Writes a file node's content to an open file, blob by blob (for large files). */
export async function writeNode(repo: Repository, n: TreeNode, fh: FileHandle): Promise<number> {
  let at = 0;
  for (const id of n.blobs ?? []) {
    const b = await repo.loadBlob(id);
    await fh.write(b, 0, b.length, at);
    at += b.length;
  }
  if (at !== n.size) throw new IntegrityError(`${n.path} read back ${at} bytes, the snapshot says ${n.size}`);
  return at;
}
