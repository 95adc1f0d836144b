/**
 * A Ferry repository: opening (config, key slots), sealed objects (index files,
 * manifests, runs), the blob index, and reading blobs back. Writing blobs goes
 * through `BlobSaver` (saver.ts), which keeps the write order: packs, then index,
 * then whatever names the blobs.
 */
import { hostname, userInfo } from 'node:os';
import { compress, decompress } from '../codec/compress.ts';
import { seal, unseal } from '../codec/encrypt.ts';
import { DEFAULT_ID_HASH, LEGACY_ID_HASH, sha256Hex, type IdHash } from '../codec/hash.ts';
import { makeSlot, newMasterKey, openSlot, splitMaster, type Credential, type KeySlot, type MasterKey } from '../codec/keys.ts';
import { listAll, type Storage } from '../storage/types.ts';
import { systemClock, type Clock } from '../util/clock.ts';
import { ConfigError, IntegrityError, KeyError, NotFoundError } from '../util/errors.ts';
import { mapLimit } from '../util/concurrency.ts';
import { CodecPool } from '../codec/pool.ts';
import { DEFAULT_CHUNKER, FastCdc, gearTable, type Chunker } from './chunker.ts';
import { DIRS, FORMAT_VERSION, parseConfig, signConfig, verifyConfig, type RepoConfig } from './format.ts';
import { MasterIndex, type IndexFile } from './index.ts';
import { packKey } from './pack.ts';

export interface InitOptions {
  chunker?: { min: number; avg: number; max: number };
  packSize?: number;
  compressionLevel?: number;
  /** The blob id function (codec/hash.ts); default BLAKE3. */
  idHash?: IdHash;
  clock?: Clock;
}

export const DEFAULT_PACK_SIZE = 16 * 1024 * 1024;

export class Repository {
  index = new MasterIndex();
  private indexLoaded = false;
  private indexLoading?: Promise<MasterIndex>;
  private readonly gear: Uint32Array;
  /** Index file names read into `index`. */
  readonly indexFiles = new Set<string>();
  private pool?: CodecPool;
  /** Codec worker threads; FERRY_THREADS overrides (0 = on the calling thread). */
  threads: number | undefined = process.env.FERRY_THREADS !== undefined ? Number(process.env.FERRY_THREADS) : undefined;

  private constructor(
    readonly storage: Storage,
    readonly config: RepoConfig,
    readonly key: MasterKey,
    readonly clock: Clock,
  ) {
    this.gear = gearTable(Buffer.from(config.chunker.seed, 'base64'));
  }

  get location(): string {
    return this.storage.location;
  }

  get id(): string {
    return this.config.id;
  }

  /** The keyed hash that names this repository's blobs (fixed at `init`). */
  get idHash(): IdHash {
    return this.config.idHash ?? LEGACY_ID_HASH;
  }

  static async init(storage: Storage, cred: Credential, opts: InitOptions = {}): Promise<Repository> {
    const clock = opts.clock ?? systemClock;
    if (await storage.stat('config')) {
      throw new ConfigError(`a repository already exists at ${storage.location}`, { hint: 'use it as it is, or choose another location' });
    }
    const master = newMasterKey();
    const key = splitMaster(master);
    const ch = opts.chunker ?? DEFAULT_CHUNKER;
    const cfg = signConfig(
      {
        format: 'ferry-repository',
        version: FORMAT_VERSION,
        id: clock.random(16).toString('hex'),
        created: new Date(clock.now()).toISOString(),
        chunker: { ...ch, seed: clock.random(32).toString('base64') },
        packSize: opts.packSize ?? DEFAULT_PACK_SIZE,
        compressionLevel: opts.compressionLevel ?? 3,
        idHash: opts.idHash ?? DEFAULT_ID_HASH,
      },
      key,
    );
    const slot = await makeSlot(master, cred, slotMeta(clock));
    await storage.put(`${DIRS.keys}${slot.id}`, Buffer.from(JSON.stringify(slot, null, 2)), { ifNoneMatch: true });
    await storage.put('config', Buffer.from(JSON.stringify(cfg, null, 2) + '\n'), { ifNoneMatch: true });
    return new Repository(storage, cfg, key, clock);
  }

  static async open(storage: Storage, creds: Credential[], clock: Clock = systemClock): Promise<Repository> {
    // The key slots are listed and read while the config is read.
    const slotsP = Repository.readSlots(storage);
    slotsP.catch(() => undefined);
    let raw: Buffer;
    try {
      raw = await storage.get('config');
    } catch (e) {
      if (e instanceof NotFoundError) {
        throw new ConfigError(`no Ferry repository at ${storage.location}`, { hint: 'create one with `ferry init`, or check --repo / FERRY_REPO' });
      }
      throw e;
    }
    const cfg = parseConfig(raw, storage.location);
    if (creds.length === 0) {
      throw new ConfigError(`no key given for repository ${storage.location}`, {
        hint: 'set FERRY_PASSWORD, FERRY_PASSWORD_FILE or FERRY_KEY_FILE',
      });
    }
    const slots = await slotsP;
    for (const cred of creds) {
      for (const slot of slots) {
        const master = await openSlot(slot, cred);
        if (master) {
          const key = splitMaster(master);
          verifyConfig(cfg, key, storage.location);
          return new Repository(storage, cfg, key, clock);
        }
      }
    }
    const what = creds.map((c) => (c.kind === 'keyfile' ? `key file ${c.path}` : 'passphrase')).join(' or ');
    throw new KeyError(`wrong ${what} for repository ${storage.location}`, {
      hint: 'check FERRY_PASSWORD / FERRY_PASSWORD_FILE / FERRY_KEY_FILE; `ferry key list` shows the slots',
    });
  }

  static async readSlots(storage: Storage): Promise<KeySlot[]> {
    const slots: KeySlot[] = [];
    for await (const o of listAll(storage, DIRS.keys)) {
      try {
        slots.push(JSON.parse((await storage.get(o.key)).toString('utf8')) as KeySlot);
      } catch (e) {
        if (!(e instanceof NotFoundError)) throw e;
      }
    }
    return slots;
  }

  async addKey(cred: Credential): Promise<KeySlot> {
    // The master key is the concatenation of the two halves we hold.
    const master = Buffer.concat([this.key.enc, this.key.mac]);
    const slot = await makeSlot(master, cred, slotMeta(this.clock));
    await this.storage.put(`${DIRS.keys}${slot.id}`, Buffer.from(JSON.stringify(slot, null, 2)), { ifNoneMatch: true });
    return slot;
  }

  async removeKey(slotId: string): Promise<void> {
    const slots = await Repository.readSlots(this.storage);
    const matches = slots.filter((s) => s.id.startsWith(slotId));
    if (matches.length === 0) throw new ConfigError(`no key slot ${slotId} in ${this.location}`, { hint: '`ferry key list` shows the slots' });
    if (matches.length > 1) throw new ConfigError(`key slot prefix ${slotId} is ambiguous`);
    if (slots.length === 1) throw new ConfigError('refusing to remove the last key slot: the repository would become unreadable');
    await this.storage.delete(`${DIRS.keys}${matches[0].id}`);
  }

  /** The worker pool that seals and opens blobs (started on first use). */
  get codec(): CodecPool {
    this.pool ??= new CodecPool(this.key, this.idHash, this.config.compressionLevel, this.threads);
    return this.pool;
  }

  /**
   * Starts the codec workers ahead of their first job: a worker thread takes about 0.1 s to
   * boot, which a command can overlap with its own set-up (listing snapshots, checks).
   */
  startCodec(): void {
    void this.codec;
  }

  /** Stops the codec workers. The repository stays usable (they restart on demand). */
  async close(): Promise<void> {
    const p = this.pool;
    this.pool = undefined;
    await p?.close();
  }

  newChunker(): Chunker {
    return new FastCdc(this.config.chunker, this.gear);
  }

  // ---- sealed objects ----------------------------------------------------

  /** Compresses, seals and stores a JSON document under `dir`; its name is the SHA-256 of the stored bytes. */
  async saveJson(dir: string, kind: string, doc: unknown, name?: string): Promise<string> {
    const data = await this.sealJson(kind, doc);
    const id = name ?? sha256Hex(data);
    await this.storage.put(`${dir}${id}`, data, { ifNoneMatch: true });
    return id;
  }

  async sealJson(kind: string, doc: unknown): Promise<Buffer> {
    const c = await compress(Buffer.from(JSON.stringify(doc)), 3);
    return Buffer.concat([Buffer.from([c.codec]), seal(this.key.enc, Buffer.from(`ferry-${kind}-v1:${c.codec}`), c.data)]);
  }

  async loadJson<T>(key: string, kind: string): Promise<T> {
    const raw = await this.storage.get(key);
    return this.unsealJson<T>(raw, kind, key);
  }

  async unsealJson<T>(raw: Buffer, kind: string, where: string): Promise<T> {
    if (raw.length < 1) throw new IntegrityError(`${where} is empty`);
    const codec = raw[0];
    const plain = unseal(this.key.enc, Buffer.from(`ferry-${kind}-v1:${codec}`), raw.subarray(1), where);
    return JSON.parse((await decompress(codec, plain)).toString('utf8')) as T;
  }

  // ---- index ----------------------------------------------------------------

  /**
   * Loads the index (once; `force` reloads it). Callers at once share one load, so a command
   * can start it early, while it does other work, and await it where it needs it.
   */
  async loadIndex(force = false): Promise<MasterIndex> {
    if (this.indexLoaded && !force) return this.index;
    if (this.indexLoading) {
      const pending = this.indexLoading;
      if (!force) return pending;
      await pending.catch(() => undefined);
    }
    const p = this.readIndex(force);
    this.indexLoading = p;
    try {
      return await p;
    } finally {
      if (this.indexLoading === p) this.indexLoading = undefined;
    }
  }

  private async readIndex(force: boolean): Promise<MasterIndex> {
    if (force) {
      this.index = new MasterIndex();
      this.indexFiles.clear();
    }
    const names: string[] = [];
    for await (const o of listAll(this.storage, DIRS.index)) names.push(o.key.slice(DIRS.index.length));
    const files = new Map<string, IndexFile>();
    await mapLimit(names.filter((n) => !this.indexFiles.has(n)), 8, async (n) => {
      try {
        files.set(n, await this.loadJson<IndexFile>(`${DIRS.index}${n}`, 'index'));
      } catch (e) {
        if (!(e instanceof NotFoundError)) throw e; // removed by a concurrent prune after superseding
      }
    });
    const superseded = new Set<string>();
    for (const f of files.values()) for (const s of f.supersedes ?? []) superseded.add(s);
    for (const [n, f] of files) {
      if (superseded.has(n)) continue;
      for (const p of f.packs) this.index.addPack(p);
      this.indexFiles.add(n);
    }
    this.indexLoaded = true;
    return this.index;
  }

  // ---- blobs ----------------------------------------------------------------

  /** Reads one blob, authenticated and checked against its id. */
  async loadBlob(idHex: string): Promise<Buffer> {
    if (!this.indexLoaded) await this.loadIndex();
    const loc = this.index.lookup(idHex);
    if (!loc) throw new IntegrityError(`blob ${idHex.slice(0, 16)} is not in the index of ${this.location}`, { hint: 'run `ferry repo check`' });
    const sealed = await this.storage.get(packKey(loc.packId), { offset: loc.offset, length: loc.length, immutable: true });
    if (sealed.length !== loc.length) throw new IntegrityError(`pack ${loc.packId.slice(0, 16)} is shorter than its index says`);
    return this.codec.open(Buffer.from(idHex, 'hex'), sealed, loc.rawLength, `pack ${loc.packId.slice(0, 16)}`);
  }
}

function slotMeta(clock: Clock) {
  let user = 'unknown';
  try {
    user = userInfo().username;
  } catch {
    /* no passwd entry */
  }
  return { id: clock.random(16).toString('hex'), created: new Date(clock.now()).toISOString(), host: hostname(), user };
}
