/**
 * Whole-repository views of packs and index files, for check and prune: which
 * index files are live, which packs they name (with their blobs), which pack
 * objects exist, and which blobs each snapshot uses.
 */
import { listAll } from '../storage/types.ts';
import { mapLimit } from '../util/concurrency.ts';
import { NotFoundError } from '../util/errors.ts';
import { DIRS } from './format.ts';
import type { IndexFile, IndexedPack } from './index.ts';
import { listSnapshots, type SnapshotRef } from './manifest.ts';
import type { Repository } from './repository.ts';
import { readTree } from './tree.ts';

export interface IndexView {
  /** Live index file names (not superseded). */
  files: string[];
  /** Every index file name found, live or superseded. */
  allFiles: string[];
  packs: Map<string, IndexedPack>;
}

export async function readIndexView(repo: Repository): Promise<IndexView> {
  const names: string[] = [];
  for await (const o of listAll(repo.storage, DIRS.index)) names.push(o.key.slice(DIRS.index.length));
  const docs = new Map<string, IndexFile>();
  await mapLimit(names, 8, async (n) => {
    try {
      docs.set(n, await repo.loadJson<IndexFile>(`${DIRS.index}${n}`, 'index'));
    } catch (e) {
      if (!(e instanceof NotFoundError)) throw e;
    }
  });
  const superseded = new Set<string>();
  for (const d of docs.values()) for (const s of d.supersedes ?? []) superseded.add(s);
  const packs = new Map<string, IndexedPack>();
  const files: string[] = [];
  for (const [n, d] of docs) {
    if (superseded.has(n)) continue;
    files.push(n);
    for (const p of d.packs) if (!packs.has(p.id)) packs.set(p.id, p);
  }
  return { files, allFiles: [...docs.keys()], packs };
}

/** Pack objects present in storage: id -> size and mtime. */
export async function listPackObjects(repo: Repository): Promise<Map<string, { size: number; mtime: number }>> {
  const out = new Map<string, { size: number; mtime: number }>();
  for await (const o of listAll(repo.storage, DIRS.data)) {
    const id = o.key.slice(o.key.lastIndexOf('/') + 1);
    out.set(id, { size: o.size, mtime: o.mtime });
  }
  return out;
}

/** Calls `visit` for each blob id a snapshot uses (its tree blobs and its files' blobs). */
export async function forEachUsedBlob(repo: Repository, snap: SnapshotRef, visit: (id: string, file?: string) => void): Promise<void> {
  for (const t of snap.manifest.tree) visit(t);
  for await (const n of readTree(repo, snap.manifest.tree)) for (const b of n.blobs ?? []) visit(b, n.path);
}

export async function usedBlobs(repo: Repository): Promise<{ used: Set<string>; snapshots: SnapshotRef[] }> {
  const snapshots = await listSnapshots(repo);
  const used = new Set<string>();
  for (const s of snapshots) await forEachUsedBlob(repo, s, (id) => used.add(id));
  return { used, snapshots };
}
