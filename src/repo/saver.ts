/**
 * BlobSaver: the write path for blobs. It dedups (against the index and blobs in
 * flight), compresses and seals on the thread pool, fills packs, uploads them with
 * bounded concurrency, and writes index files for uploaded packs.
 *
 * Write order (durability rule 2): a blob is only reported indexed after its pack
 * is durably stored and an index file naming that pack is durably stored. Callers
 * write whatever names blobs (a manifest) only after `flush()` resolves.
 */
import { ByteBudget, Semaphore } from '../util/concurrency.ts';
import { BufferPool } from '../util/pool.ts';
import { killPoint } from '../util/killpoint.ts';
import type { BlobType } from './blob.ts';
import { DIRS } from './format.ts';
import type { IndexFile, IndexedPack } from './index.ts';
import { PackBuilder, packKey } from './pack.ts';
import type { Repository } from './repository.ts';

/** Smaller blobs are hashed on the calling thread first (the trip costs more than a wasted seal saves). */
const HASH_SEAL_MIN = 16 << 10;
/** How many recent `fresh` blobs decide whether the next is hashed and sealed in one trip. */
const GUESS_WINDOW = 64;

/** The share of true among the last `size` outcomes recorded. */
export class RecentShare {
  private readonly ring: boolean[] = [];
  private at = 0;
  private trues = 0;

  constructor(private readonly size: number) {}

  record(v: boolean): void {
    if (this.ring.length < this.size) this.ring.push(v);
    else {
      if (this.ring[this.at]) this.trues--;
      this.ring[this.at] = v;
      this.at = (this.at + 1) % this.size;
    }
    if (v) this.trues++;
  }

  /** Recorded outcomes so far, at most `size`. */
  get count(): number {
    return this.ring.length;
  }

  get share(): number {
    return this.ring.length ? this.trues / this.ring.length : 0;
  }
}

export interface SaverStats {
  newBlobs: number;
  dedupedBlobs: number;
  /** Plaintext bytes of new blobs. */
  newBytes: number;
  /** Bytes of packs uploaded (what the repository grew by, before index files). */
  storedBytes: number;
  packs: number;
}

export interface SaverOptions {
  /** Packs uploading at once. */
  uploads?: number;
  /** Plaintext bytes being sealed at once (bounds memory). */
  inFlightBytes?: number;
  /** Write an index file after this many packs, so a crash keeps dedup progress. */
  indexEvery?: number;
  /** zstd level for the blobs of this saver (default: the repository's). */
  compressionLevel?: number;
}

export class BlobSaver {
  readonly stats: SaverStats = { newBlobs: 0, dedupedBlobs: 0, newBytes: 0, storedBytes: 0, packs: 0 };
  private readonly pending = new Set<string>();
  private builder: PackBuilder;
  private readonly inFlight: ByteBudget;
  private readonly uploadSlots: Semaphore;
  private readonly uploadLimit: number;
  private readonly inflight = new Set<Promise<void>>();
  private uploaded: IndexedPack[] = [];
  /** Every pack this saver uploaded and indexed. */
  readonly writtenPacks: IndexedPack[] = [];
  private error: unknown;
  private readonly indexEvery: number;
  private readonly packBuffers: BufferPool;
  private readonly level?: number;
  /** Recent outcomes for `fresh` data: whether each blob turned out to be a duplicate (see save). */
  private readonly freshDups = new RecentShare(GUESS_WINDOW);

  constructor(
    private readonly repo: Repository,
    opts: SaverOptions = {},
  ) {
    this.inFlight = new ByteBudget(opts.inFlightBytes ?? 16 << 20);
    // A local disk takes one pack at a time as fast as the next fills (and each pack in flight
    // holds a 20 MiB buffer); a network store wants a few in flight.
    this.uploadLimit = opts.uploads ?? (repo.storage.capabilities.remote ? 3 : 1);
    this.uploadSlots = new Semaphore(this.uploadLimit);
    this.indexEvery = opts.indexEvery ?? 32;
    this.level = opts.compressionLevel;
    // A pack never grows past its target by more than one largest chunk: no reallocation.
    this.packBuffers = new BufferPool(this.repo.config.packSize + Math.max(this.repo.config.chunker.max, 1 << 20) + (64 << 10), this.uploadLimit + 1);
    this.builder = this.newBuilder();
  }

  private newBuilder(): PackBuilder {
    // Never blocks: at most `uploads` packs upload (each holding a buffer) plus the one being built.
    return new PackBuilder(this.packBuffers.takeNow());
  }

  get repository(): Repository {
    return this.repo;
  }

  /**
   * Stores `plain` as a blob unless the repository has it already. Returns its id (hex).
   * `fresh`: the data is most likely new (a file the parent snapshot did not have), so it
   * is hashed and sealed in one trip to a worker and dropped there if it was a duplicate
   * after all. While more than a quarter of the last GUESS_WINDOW fresh blobs turned out
   * duplicates (a tree copied within itself; the catalogs of PostgreSQL's template
   * databases), fresh data is hashed first instead, and its outcomes keep being counted,
   * so the one-trip path comes back as soon as new data does (the tables after them).
   */
  async save(type: BlobType, plain: Buffer, fresh = false): Promise<string> {
    if (!fresh || plain.length < HASH_SEAL_MIN) return this.store(type, plain, false);
    if (this.freshDups.share * 4 <= 1) return this.storeFresh(type, plain);
    return this.store(type, plain, false, (dup) => this.freshDups.record(dup));
  }

  private async storeFresh(type: BlobType, plain: Buffer): Promise<string> {
    this.throwIfFailed();
    await this.backpressure();
    await this.inFlight.acquire(plain.length);
    let r: { id: string; added: boolean };
    try {
      r = await this.repo.codec.hashSeal(
        plain,
        (idBuf, sealed) => {
          const id = idBuf.toString('hex');
          if (this.pending.has(id) || this.repo.index.has(id)) return { id, added: false };
          this.pending.add(id);
          this.builder.add(type, idBuf, [sealed], plain.length);
          return { id, added: true };
        },
        this.level,
      );
    } finally {
      this.inFlight.release(plain.length);
    }
    this.freshDups.record(!r.added);
    if (!r.added) {
      this.stats.dedupedBlobs++;
      return r.id;
    }
    await this.added(plain);
    return r.id;
  }

  /** Counts a blob added to the current pack, and starts its upload once the pack is full. */
  private async added(plain: Buffer): Promise<void> {
    this.stats.newBlobs++;
    this.stats.newBytes += plain.length;
    if (this.builder.size >= this.repo.config.packSize) await this.startUpload();
  }

  /**
   * While every upload slot is busy, do not fill the next pack past most of its target, so
   * finished packs never pile up in memory waiting to be uploaded.
   */
  private async backpressure(): Promise<void> {
    while (this.inflight.size >= this.uploadLimit && this.builder.size >= this.repo.config.packSize * 0.75) await Promise.race(this.inflight);
  }

  /** Stores a blob even if the index has it (prune's repack). */
  async saveAgain(type: BlobType, plain: Buffer): Promise<string> {
    return this.store(type, plain, true);
  }

  /** `outcome`: told whether the blob was a duplicate, once that is known. */
  private async store(type: BlobType, plain: Buffer, again: boolean, outcome?: (dup: boolean) => void): Promise<string> {
    this.throwIfFailed();
    const idBuf = await this.repo.codec.hash(plain);
    this.throwIfFailed();
    const id = idBuf.toString('hex');
    const dup = this.pending.has(id) || (!again && this.repo.index.has(id));
    outcome?.(dup);
    if (dup) {
      this.stats.dedupedBlobs++;
      return id;
    }
    this.pending.add(id);
    await this.backpressure();
    await this.inFlight.acquire(plain.length);
    try {
      // Copied into the current pack while the codec's buffer is valid.
      await this.repo.codec.seal(idBuf, plain, (sealed) => this.builder.add(type, idBuf, [sealed], plain.length), this.level);
    } finally {
      this.inFlight.release(plain.length);
    }
    await this.added(plain);
    return id;
  }

  /** Uploads the partial pack, waits for all uploads and writes the index file for them. */
  async flush(): Promise<void> {
    if (this.builder.count > 0) await this.startUpload();
    await Promise.allSettled([...this.inflight]);
    this.throwIfFailed();
    await this.writeIndex();
  }

  private throwIfFailed(): void {
    if (this.error !== undefined) throw this.error;
  }

  private async startUpload(): Promise<void> {
    const b = this.builder;
    this.builder = this.newBuilder();
    await this.uploadSlots.acquire();
    this.throwIfFailed();
    const p = (async () => {
      try {
        const pack = b.finish(this.repo.key);
        await this.repo.storage.put(packKey(pack.id), pack.data);
        this.stats.packs++;
        this.stats.storedBytes += pack.size;
        this.uploaded.push({ id: pack.id, size: pack.size, blobs: pack.entries });
        this.packBuffers.give(b.buffer);
        await killPoint('after-pack-upload');
      } catch (e) {
        this.error ??= e;
      } finally {
        this.uploadSlots.release();
      }
    })();
    this.inflight.add(p);
    void p.finally(() => this.inflight.delete(p));
    if (this.uploaded.length >= this.indexEvery) await this.writeIndex();
  }

  /** Writes one index file for the packs uploaded since the last one. */
  private async writeIndex(): Promise<void> {
    if (this.uploaded.length === 0) return;
    const packs = this.uploaded;
    this.uploaded = [];
    await killPoint('before-index');
    const doc: IndexFile = { version: 1, packs };
    const name = await this.repo.saveJson(DIRS.index, 'index', doc);
    this.repo.indexFiles.add(name);
    for (const p of packs) {
      this.writtenPacks.push(p);
      this.repo.index.addPack(p);
      for (const b of p.blobs) this.pending.delete(b.id);
    }
  }
}
