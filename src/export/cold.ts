/**
 * The cold tier: a second Ferry repository at another location (another directory,
 * another bucket or prefix) with the same config and master key as the hot one, so
 * blob ids, sealed blobs and pack formats are identical in both and blobs move
 * between them as sealed bytes, never decrypted and re-encrypted.
 *
 * Moving an export (the order is what keeps it safe, see docs/format.md):
 *   1. copy the sealed blobs it names that cold lacks into new cold packs, each
 *      blob authenticated on the way; then one cold index file naming those packs;
 *   2. write its manifest in cold under the same id (meta.tier `cold`);
 *   3. read the whole export back from cold and check its size and SHA-256;
 *   4. only then delete the hot manifest.
 * The hot blobs stay until a hot prune finds nothing else using them, so younger
 * exports that share them lose nothing. A crash at any step leaves the export
 * readable in hot, in cold, or in both; the next run finishes the move.
 */
import type { Credential } from '../codec/keys.ts';
import { DIRS, parseConfig } from '../repo/format.ts';
import type { IndexFile, IndexedPack } from '../repo/index.ts';
import { loadManifest } from '../repo/manifest.ts';
import { PackBuilder, packKey } from '../repo/pack.ts';
import { forEachUsedBlob } from '../repo/packs.ts';
import { forget } from '../repo/prune.ts';
import { Repository } from '../repo/repository.ts';
import type { Storage } from '../storage/types.ts';
import { AlreadyExistsError, ConfigError, IntegrityError, NotFoundError } from '../util/errors.ts';
import { killPoint } from '../util/killpoint.ts';
import type { ExportMeta, ExportRef } from './meta.ts';
import { streamExport } from './read.ts';

/** Adjacent sealed blobs of one pack fetched in one ranged GET, up to this many bytes. */
const MAX_RANGE = 16 * 1024 * 1024;

/**
 * Opens the cold tier at `storage` to read (`write` false: undefined when there is
 * none yet) or to move exports into (`write`: created when missing, from the hot
 * repository's key slots and then its config, copied as they are). Refuses a
 * location that holds another repository, or that is the hot location itself; for
 * writing, also under another name (a probe object written to the hot location must
 * not show up in the cold one), since a move into the hot location would end by
 * deleting the export's only manifest.
 */
export async function openColdTier(hot: Repository, storage: Storage, creds: Credential[], write: boolean): Promise<Repository | undefined> {
  if (storage.location === hot.location) {
    throw new ConfigError(`the cold tier ${storage.location} is the repository itself`, { hint: 'give the cold tier another directory, bucket or prefix' });
  }
  const exists = !!(await storage.stat('config'));
  if (!exists && !write) return undefined;
  if (write) await assertDistinct(hot, storage);
  const other = () =>
    new ConfigError(`${storage.location} holds another Ferry repository, not the cold tier of ${hot.location} (id ${hot.config.id.slice(0, 12)})`, {
      hint: 'give the cold tier an empty location; Ferry creates it there',
    });
  if (exists && parseConfig(await storage.get('config'), storage.location).id !== hot.config.id) throw other();
  if (!exists) {
    await copySlots(hot, storage);
    // Last: a location is a repository once its config exists.
    await storage.put('config', await hot.storage.get('config'), { ifNoneMatch: true }).catch((e) => {
      if (!(e instanceof AlreadyExistsError)) throw e;
    });
  }
  // Slots added to the hot repository later (key rotation) open the cold tier too.
  else await copySlots(hot, storage);
  const cold = await Repository.open(storage, creds, hot.clock);
  if (cold.config.id !== hot.config.id || cold.config.mac !== hot.config.mac) throw other();
  return cold;
}

/** Refuses when `storage` is another name for the hot location (an object put in one shows in the other). */
async function assertDistinct(hot: Repository, storage: Storage): Promise<void> {
  const probe = `tier-probe-${hot.clock.random(8).toString('hex')}`;
  await hot.storage.put(probe, Buffer.from('ferry cold tier probe\n'));
  try {
    if (await storage.stat(probe)) {
      throw new ConfigError(`the cold tier ${storage.location} is the same place as the repository ${hot.location}`, { hint: 'give the cold tier another directory, bucket or prefix' });
    }
  } finally {
    await hot.storage.delete(probe).catch(() => undefined);
  }
}

async function copySlots(hot: Repository, storage: Storage): Promise<void> {
  const have = new Set((await Repository.readSlots(storage)).map((s) => s.id));
  for (const s of await Repository.readSlots(hot.storage)) {
    if (have.has(s.id)) continue;
    await storage.put(`${DIRS.keys}${s.id}`, Buffer.from(JSON.stringify(s, null, 2)), { ifNoneMatch: true }).catch((e) => {
      if (!(e instanceof AlreadyExistsError)) throw e;
    });
  }
}

export interface MoveReport {
  id: string;
  /** Blobs copied / already in cold. */
  blobsCopied: number;
  blobsShared: number;
  /** Bytes of new cold packs. */
  storedBytes: number;
}

/**
 * Copies the sealed blobs the export names that `cold` lacks, as new packs plus one
 * index file. Every blob is authenticated (and checked against its id) before it is
 * copied, so corruption in hot is never carried into cold.
 */
async function copyBlobs(hot: Repository, cold: Repository, ref: ExportRef): Promise<{ copied: number; shared: number; storedBytes: number }> {
  await hot.loadIndex(true);
  await cold.loadIndex(true);
  const needed = new Set<string>();
  await forEachUsedBlob(hot, { id: ref.id, manifest: ref.manifest }, (id) => needed.add(id));
  const missing = [...needed].filter((id) => !cold.index.has(id));
  const located = missing.map((id) => {
    const loc = hot.index.lookup(id);
    if (!loc) throw new IntegrityError(`export ${ref.id.slice(0, 12)} names blob ${id.slice(0, 16)}, which is in no index of ${hot.location}`, { hint: 'run `ferry repo check`' });
    return { id, loc };
  });
  located.sort((a, b) => a.loc.packId.localeCompare(b.loc.packId) || a.loc.offset - b.loc.offset);
  const written: IndexedPack[] = [];
  let storedBytes = 0;
  let builder = new PackBuilder(Buffer.allocUnsafe(located.length ? cold.config.packSize + (4 << 20) : 0));
  const upload = async () => {
    if (builder.count === 0) return;
    const pack = builder.finish(cold.key);
    await cold.storage.put(packKey(pack.id), pack.data);
    written.push({ id: pack.id, size: pack.size, blobs: pack.entries });
    storedBytes += pack.size;
    builder = new PackBuilder(builder.buffer);
  };
  for (let i = 0; i < located.length; ) {
    // One ranged GET for a run of adjacent blobs of one pack.
    let j = i + 1;
    let end = located[i].loc.offset + located[i].loc.length;
    while (j < located.length && located[j].loc.packId === located[i].loc.packId && located[j].loc.offset === end && end - located[i].loc.offset + located[j].loc.length <= MAX_RANGE) {
      end += located[j].loc.length;
      j++;
    }
    const first = located[i].loc;
    const where = `pack ${first.packId.slice(0, 16)} of ${hot.location}`;
    const buf = await hot.storage.get(packKey(first.packId), { offset: first.offset, length: end - first.offset });
    if (buf.length !== end - first.offset) throw new IntegrityError(`${where} is shorter than its index says`, { hint: 'run `ferry repo check`' });
    for (const { id, loc } of located.slice(i, j)) {
      const sealed = buf.subarray(loc.offset - first.offset, loc.offset - first.offset + loc.length);
      const idBuf = Buffer.from(id, 'hex');
      await hot.codec.open(idBuf, sealed, loc.rawLength, where); // authenticates; throws on corruption
      builder.add(loc.type, idBuf, [sealed], loc.rawLength);
      if (builder.size >= cold.config.packSize) await upload();
    }
    i = j;
  }
  await upload();
  if (written.length) {
    await killPoint('cold-before-index');
    const doc: IndexFile = { version: 1, packs: written };
    await cold.saveJson(DIRS.index, 'index', doc);
  }
  await cold.loadIndex(true);
  return { copied: missing.length, shared: needed.size - missing.length, storedBytes };
}

/** Moves one hot export to the cold tier (see the module comment for the order). */
export async function moveToCold(hot: Repository, cold: Repository, ref: ExportRef): Promise<MoveReport> {
  if (ref.repo !== hot) throw new IntegrityError(`export ${ref.id.slice(0, 12)} is not in the hot repository`);
  const copied = await copyBlobs(hot, cold, ref);
  const meta: ExportMeta = { ...ref.meta, tier: 'cold', movedAt: new Date(hot.clock.now()).toISOString() };
  try {
    await cold.saveJson(DIRS.snapshots, 'manifest', { ...ref.manifest, meta }, ref.id);
  } catch (e) {
    if (!(e instanceof AlreadyExistsError)) throw e; // written by an interrupted move: verified below
  }
  await killPoint('cold-before-verify');
  // The copy must read back whole and equal before the hot manifest goes.
  const coldManifest = await loadManifest(cold, ref.id);
  await streamExport(cold, coldManifest, async () => undefined);
  await killPoint('cold-before-forget');
  await forget(hot, [ref.id]);
  return { id: ref.id, blobsCopied: copied.copied, blobsShared: copied.shared, storedBytes: copied.storedBytes };
}

/** Deletes an export's manifest from the tier that holds it; prune frees what nothing else uses. */
export async function deleteExport(ref: ExportRef): Promise<void> {
  try {
    await forget(ref.repo, [ref.id]);
  } catch (e) {
    if (!(e instanceof NotFoundError)) throw e;
  }
}
