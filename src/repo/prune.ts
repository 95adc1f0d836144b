/**
 * Forget and prune.
 *
 * `forget` deletes manifests only (a snapshot ceases to exist when its manifest
 * goes; its data stays until prune). `prune` runs under the exclusive lock, so no
 * backup can be adding references meanwhile, and deletes in this order:
 *   1. repack the used blobs of mostly-unused packs into new packs (+ their index),
 *   2. write one index file for every kept pack, superseding all older index files,
 *   3. delete the superseded index files,
 *   4. delete packs no index names (unused, repacked, or left by interrupted runs).
 * A crash at any step leaves a repository that `repo check` passes: at worst
 * duplicate index entries or unindexed packs, which the next prune removes.
 */
import { DIRS } from './format.ts';
import type { IndexFile, IndexedPack } from './index.ts';
import { withLock } from './lock.ts';
import { packKey } from './pack.ts';
import { listPackObjects, readIndexView, usedBlobs } from './packs.ts';
import type { Repository } from './repository.ts';
import { BlobSaver } from './saver.ts';
import { mapLimit } from '../util/concurrency.ts';
import { IntegrityError } from '../util/errors.ts';
import { killPoint } from '../util/killpoint.ts';

export interface PruneOptions {
  dryRun?: boolean;
  /** Repack a pack when at least this fraction of its bytes is unused (0..1). */
  repackThreshold?: number;
}

export interface PrunePlan {
  packsTotal: number;
  packsDelete: string[];
  packsRepack: string[];
  packsUnindexed: string[];
  bytesFreed: number;
  blobsUsed: number;
  blobsUnused: number;
}

export async function forget(repo: Repository, ids: string[]): Promise<void> {
  for (const id of ids) await repo.storage.delete(`${DIRS.snapshots}${id}`);
}

export async function prune(repo: Repository, opts: PruneOptions = {}): Promise<PrunePlan> {
  return withLock(repo, 'prune', true, async () => {
    const view = await readIndexView(repo);
    const objects = await listPackObjects(repo);
    const { used } = await usedBlobs(repo);
    const indexedBlobs = new Set<string>();
    for (const p of view.packs.values()) for (const b of p.blobs) indexedBlobs.add(b.id);
    const missing = [...used].filter((b) => !indexedBlobs.has(b));
    if (missing.length) {
      throw new IntegrityError(`prune stopped: snapshots use ${missing.length} blobs that no index names`, { hint: 'run `ferry repo check` and repair the repository first' });
    }
    const threshold = opts.repackThreshold ?? 0.2;
    const plan: PrunePlan = { packsTotal: view.packs.size, packsDelete: [], packsRepack: [], packsUnindexed: [], bytesFreed: 0, blobsUsed: 0, blobsUnused: 0 };
    const keep: IndexedPack[] = [];
    for (const p of view.packs.values()) {
      let usedBytes = 0;
      let u = 0;
      for (const b of p.blobs) {
        if (used.has(b.id)) {
          usedBytes += b.length;
          u++;
        }
      }
      plan.blobsUsed += u;
      plan.blobsUnused += p.blobs.length - u;
      if (u === 0) {
        plan.packsDelete.push(p.id);
        plan.bytesFreed += p.size;
      } else if (1 - usedBytes / p.size >= threshold) {
        plan.packsRepack.push(p.id);
        plan.bytesFreed += p.size - usedBytes;
      } else keep.push(p);
    }
    for (const id of objects.keys()) {
      if (!view.packs.has(id)) {
        plan.packsUnindexed.push(id);
        plan.bytesFreed += objects.get(id)!.size;
      }
    }
    if (opts.dryRun) return plan;

    // 1. repack
    if (plan.packsRepack.length) {
      await repo.loadIndex(true);
      const saver = new BlobSaver(repo);
      // Let the saver store blobs again even though the index knows them.
      const fresh = new Set<string>();
      for (const id of plan.packsRepack) {
        const p = view.packs.get(id)!;
        for (const b of p.blobs) {
          if (!used.has(b.id) || fresh.has(b.id)) continue;
          fresh.add(b.id);
          const plain = await repo.loadBlob(b.id);
          await saver.saveAgain(b.type, plain);
        }
      }
      await saver.flush();
      for (const p of saver.writtenPacks) keep.push(p);
    }
    await killPoint('prune-before-index');
    // 2. one index for every kept pack, superseding all older files
    const doc: IndexFile = { version: 1, supersedes: view.allFiles, packs: keep };
    await repo.saveJson(DIRS.index, 'index', doc);
    // 3. delete superseded index files
    await mapLimit(view.allFiles, 8, (n) => repo.storage.delete(`${DIRS.index}${n}`));
    await killPoint('prune-before-delete');
    // 4. delete packs no index names
    const gone = [...plan.packsDelete, ...plan.packsRepack, ...plan.packsUnindexed];
    await mapLimit(gone, 8, (id) => repo.storage.delete(packKey(id)));
    await repo.loadIndex(true);
    return plan;
  });
}
