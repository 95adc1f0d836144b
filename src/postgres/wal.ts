/**
 * WAL archive: one repository object per WAL file (segment, `.partial`, timeline
 * history, backup history), addressed by name (`walKey`), so `wal fetch` is one GET.
 *
 * Object layout (docs/format.md, "WAL objects"):
 *
 *   codec(1) || nonce(12) || AES-256-GCM(enc, compressed file) || tag(16)
 *
 * with associated data `ferry-wal-v1:<file name>:<codec as decimal>`: an object
 * cannot be served under another name (segment N as N+1, a `.partial` as the
 * complete segment) without failing authentication. Compression is zstd at
 * WAL_LEVEL (level 1: on pgbench WAL it compresses within a few percent of
 * level 3 at about twice the speed; see the measurements in the module tests).
 *
 * Files of SLICE bytes and more (segments) are pushed and fetched one SLICE at a
 * time through reused buffers (`pushWalFile`, `fetchWalToFile`): on this kind of
 * machine fresh memory costs about 2.5 ms per MiB to fault in, so holding a 16 MiB
 * segment whole cost more than compressing it (a cold `wal push` of compressible
 * WAL: read 44 ms + compress 27 ms whole, against 5 + 10 ms in slices).
 *
 * Durability rule 1, as `pushWal` implements it: the object is written with
 * if-none-match (or stat-then-put on backends without conditional put), `put`
 * resolves only once durable, and the stored length is checked with `stat`
 * before success is reported. A name already stored is never overwritten:
 * same plaintext is success (`duplicate`), different plaintext is a
 * WalConflictError. The one exception is `.partial` files, which grow: a
 * stored `.partial` may be replaced by one that extends it (same bytes up to
 * the stored one's last non-zero byte), never by one that drops data. That lets
 * `wal stream` upload the segment in progress every few seconds, and lets a
 * promoted server's archive_command push its `.partial` over a streamed one.
 *
 * This module knows no argv and prints nothing; the CLI (cli/wal.ts) does.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fstatSync, openSync, read, readSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { CODEC_NONE, CODEC_ZSTD, decompress, frameContentSize, Zstd, ZstdStreamCompressor, ZstdStreamDecompressor } from '../codec/compress.ts';
import { sealParts, SealStream, unseal, unsealStream } from '../codec/encrypt.ts';
import type { MasterKey } from '../codec/keys.ts';
import type { Repository } from '../repo/repository.ts';
import { listAll, type Storage } from '../storage/types.ts';
import { AlreadyExistsError, FerryError, IntegrityError, NotFoundError, StorageError, UsageError } from '../util/errors.ts';
import { killPoint } from '../util/killpoint.ts';
import { parseWalName, walKey, type WalKind, type WalName } from './walname.ts';

/** zstd level for WAL objects (see the module header). */
export const WAL_LEVEL = 1;
/** Files this large or larger go through the repository in slices of this size (see the module header). */
export const SLICE = 1 << 20;
/**
 * zstd threads of a push of a WAL file of SLICE bytes or more (`pushWalFile`): while they
 * compress, the calling thread reads the next slice and seals and writes what is done. A
 * `ferry wal push` of pgbench WAL here, 120 segments alternating, 4-7% faster than with zstd
 * on the calling thread (sum 13.1 vs 13.7 s, p50 102 vs 110 ms). The async push worker, whose
 * pushes share one JavaScript thread, gains more (see its pushOne).
 */
export const PUSH_ZSTD_THREADS = Math.min(2, availableParallelism());

export const MIN_SEGMENT_SIZE = 1 << 20;
export const MAX_SEGMENT_SIZE = 1 << 30;

/** A push found the name stored with different content (or an unreadable stored copy). Exit 1. */
export class WalConflictError extends FerryError {}

/** `wal fetch` of a name the repository does not hold: normal at the end of recovery. Exit 1. */
export class WalMissingError extends NotFoundError {}

export function walAad(name: string, codec: number): Buffer {
  return Buffer.from(`ferry-wal-v1:${name}:${codec}`);
}

let zstd: Zstd | undefined;

/** Compresses and seals one WAL file's bytes for storage under `name`. */
export function sealWal(key: MasterKey, name: string, plain: Buffer): Buffer {
  zstd ??= new Zstd(WAL_LEVEL);
  const c = zstd.compressView(plain);
  const data = c.codec === CODEC_NONE ? plain : Buffer.from(c.data.buffer, c.data.byteOffset, c.data.length);
  return Buffer.concat([Buffer.from([c.codec]), ...sealParts(key.enc, walAad(name, c.codec), data)]);
}

/** Authenticates and decompresses a stored WAL object; throws IntegrityError naming `where`. */
export async function unsealWal(key: MasterKey, name: string, raw: Buffer, where: string): Promise<Buffer> {
  if (raw.length < 1) throw new IntegrityError(`${where} is empty`);
  const codec = raw[0];
  const compressed = unseal(key.enc, walAad(name, codec), raw.subarray(1), where);
  try {
    return await decompress(codec, compressed);
  } catch (e) {
    if (e instanceof IntegrityError) throw new IntegrityError(`${where}: ${e.message}`, { hint: e.hint });
    throw e;
  }
}

// ---- validation ---------------------------------------------------------------

/** Fields of the long page header that starts every WAL segment (little-endian hosts). */
export interface LongPageHeader {
  magic: number;
  timeline: number;
  pageAddr: bigint;
  systemIdentifier: bigint;
  segmentSize: number;
  blockSize: number;
}

const XLP_LONG_HEADER = 0x0002;

/**
 * Reads the long page header at the start of a segment, or undefined when the
 * bytes do not look like one (all zeros, as in a fresh `.partial`, or not WAL).
 * xlp_magic differs per major version (0xD106 = 13 … 0xD116 = 17); any 0xD0xx/0xD1xx
 * value with the long-header flag and a plausible segment and block size counts.
 */
export function readLongPageHeader(data: Buffer): LongPageHeader | undefined {
  if (data.length < 40) return undefined;
  const magic = data.readUInt16LE(0);
  const info = data.readUInt16LE(2);
  if ((magic & 0xfe00) !== 0xd000 || !(info & XLP_LONG_HEADER)) return undefined;
  const segmentSize = data.readUInt32LE(32);
  const blockSize = data.readUInt32LE(36);
  if (!isPowerOfTwo(segmentSize) || !isPowerOfTwo(blockSize) || blockSize < 1024 || blockSize > 65536) return undefined;
  return {
    magic,
    timeline: data.readUInt32LE(4),
    pageAddr: data.readBigUInt64LE(8),
    systemIdentifier: data.readBigUInt64LE(24),
    segmentSize,
    blockSize,
  };
}

function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

function sizeText(n: number): string {
  return n >= 1 << 20 && n % (1 << 20) === 0 ? `${n >> 20} MiB` : `${n} bytes`;
}

/**
 * Checks that `data` can be the WAL file `name` (read from `where`): a segment
 * has the cluster's segment size (from its long page header, else any power of
 * two from 1 MiB to 1 GiB) and its first page is for the segment its name says.
 * History, backup and `.partial` files may have any size.
 */
export function checkWalFile(name: string, data: Buffer, where: string): WalName {
  return checkWalHead(name, data, data.length, where);
}

/** `checkWalFile` from the file's first bytes (at least its first page) and its size. */
export function checkWalHead(name: string, head: Buffer, size: number, where: string): WalName {
  const w = parseWalName(name);
  if (size > MAX_SEGMENT_SIZE) throw new IntegrityError(`${where} has ${size} bytes, more than any WAL file can have`);
  if (w.kind !== 'segment' && w.kind !== 'partial') return w;
  const hdr = readLongPageHeader(head);
  if (w.kind === 'segment') {
    if (hdr && hdr.segmentSize !== size) {
      throw new IntegrityError(`${where} has ${sizeText(size)} but its page header says the cluster's WAL segment size is ${sizeText(hdr.segmentSize)}`, {
        hint: 'the file is truncated or not a complete WAL segment; PostgreSQL archives only complete segments',
      });
    }
    if (!isPowerOfTwo(size) || size < MIN_SEGMENT_SIZE || size > MAX_SEGMENT_SIZE) {
      throw new IntegrityError(`${where} has ${sizeText(size)}; a WAL segment has the cluster's segment size (a power of two from 1 MiB to 1 GiB, 16 MiB by default)`, {
        hint: 'the file is truncated or not a WAL segment',
      });
    }
  }
  if (hdr) {
    const seg = parseWalName(name, hdr.segmentSize);
    const want = (seg.segno as bigint) * BigInt(hdr.segmentSize);
    if (hdr.pageAddr !== want) {
      throw new IntegrityError(`${where} does not hold WAL segment ${name}: its first page is at ${fmtAddr(hdr.pageAddr)}, expected ${fmtAddr(want)}`, {
        hint: 'the file was renamed or recycled; check what handed it to ferry',
      });
    }
  }
  return w;
}

function fmtAddr(a: bigint): string {
  return `${(a >> 32n).toString(16).toUpperCase()}/${(a & 0xffffffffn).toString(16).toUpperCase()}`;
}

/** Index one past the last non-zero byte (0 for an all-zero buffer). */
export function contentEnd(b: Buffer): number {
  let i = b.length;
  // Compare 8 bytes at a time where aligned: a 16 MiB zero tail is common in `.partial` files.
  while (i >= 8 && b.readBigUInt64LE(i - 8) === 0n) i -= 8;
  while (i > 0 && b[i - 1] === 0) i--;
  return i;
}

/**
 * Whether `longer` holds everything `shorter` holds: equal bytes up to the end of
 * `shorter`'s non-zero content. (`.partial` files are zero-padded to the segment
 * size, so "extends" cannot be a plain prefix test.)
 */
export function covers(longer: Buffer, shorter: Buffer): boolean {
  const end = contentEnd(shorter);
  if (longer.length < end) return false;
  return longer.subarray(0, end).equals(shorter.subarray(0, end));
}

// ---- push -----------------------------------------------------------------------

export type PushOutcome =
  /** Newly stored. */
  | 'stored'
  /** Already stored with the same content: nothing written. */
  | 'duplicate'
  /** `.partial` only: the stored copy already holds every byte of this one. */
  | 'covered'
  /** `.partial` only: replaced a stored copy this one extends. */
  | 'replaced';

export interface PushResult {
  name: string;
  key: string;
  kind: WalKind;
  outcome: PushOutcome;
  /** Bytes of the WAL file. */
  bytes: number;
  /** Bytes of the stored object (for duplicates: of the copy already there). */
  storedBytes: number;
}

export interface PushOptions {
  /** For tests and tools: what to say in messages instead of the name. */
  where?: string;
  /** zstd threads of its own for this push (default PUSH_ZSTD_THREADS; 0 or 1: on the calling thread). */
  threads?: number;
}

/**
 * Stores one WAL file held in memory durably (rule 1) and returns only once its
 * length is checked. Validates the file first (`checkWalFile`).
 */
export async function pushWal(repo: Repository, name: string, data: Buffer, opts: PushOptions = {}): Promise<PushResult> {
  const where = opts.where ?? name;
  const w = checkWalFile(name, data, where);
  return storeWal(repo, { name, kind: w.kind, bytes: data.length, sealed: () => [sealWal(repo.key, name, data)], plain: () => data }, where);
}

/**
 * `pushWal` of the WAL file at `path` (its base name is its WAL name), read,
 * compressed and sealed through one reused SLICE buffer in two halves (see the module
 * header): the next half is read on the thread pool while this one is compressed, which
 * took 18 ms off a 16 MiB push here (159 -> 140 ms a command). On a local repository
 * each sealed piece goes to the temp file as it is made. The bytes stored are those
 * read; a file that changes size while it is read fails the push (PostgreSQL hands over
 * only complete files, so that means something else is writing it).
 */
export async function pushWalFile(repo: Repository, path: string, opts: PushOptions = {}): Promise<PushResult> {
  const where = opts.where ?? path;
  const name = basename(path);
  parseWalName(name);
  const fd = openWalFile(path);
  let slicer: Slicer | undefined;
  // The read in flight, if any: awaited before the descriptor is closed and the buffer reused.
  let reading: Promise<Buffer> | undefined;
  try {
    const size = fstatSync(fd).size;
    if (size < SLICE) {
      const data = readSlice(fd, Buffer.allocUnsafe(size), 0, where);
      if (data.length !== size) throw changed(where);
      return await pushWal(repo, name, data, { where });
    }
    const { buf, z } = (slicer = takeSlicer(opts.threads ?? PUSH_ZSTD_THREADS));
    // Two halves: the next one is read on the thread pool while this one is compressed.
    const halves = [buf.subarray(0, SLICE / 2), buf.subarray(SLICE / 2)];
    const head = readSlice(fd, halves[0], 0, where);
    const w = checkWalHead(name, head, size, where);
    const sealed = async function* (): AsyncGenerator<Buffer> {
      const enc = new SealStream(repo.key.enc, walAad(name, CODEC_ZSTD));
      const out: Buffer[] = [Buffer.from([CODEC_ZSTD]), enc.nonce];
      const emit = (piece: Uint8Array): void => enc.update(piece, out);
      z.begin(size);
      let pos = 0;
      let slice = head;
      for (let half = 0; ; half ^= 1) {
        pos += slice.length;
        const end = pos >= size;
        const next = end ? undefined : (reading = readSliceAsync(fd, halves[half ^ 1], pos, where));
        z.write(slice, end, emit);
        if (end) break;
        yield* out.splice(0);
        slice = await next!;
        if (slice.length === 0) throw changed(where);
      }
      if (pos !== size || fstatSync(fd).size !== size) throw changed(where);
      enc.end(out);
      yield* out;
    };
    const plain = (): Buffer => {
      const data = readSlice(fd, Buffer.allocUnsafe(size), 0, where);
      if (data.length !== size) throw changed(where);
      return data;
    };
    return await storeWal(repo, { name, kind: w.kind, bytes: size, sealed, plain }, where);
  } finally {
    await reading?.catch(() => undefined);
    closeSync(fd);
    if (slicer) idleSlicers.push(slicer);
  }
}

/** What `storeWal` needs of one WAL file. */
interface WalSource {
  name: string;
  kind: WalKind;
  /** Bytes of the WAL file. */
  bytes: number;
  /** The sealed object, in pieces that are each a buffer of their own; called once. */
  sealed: () => Iterable<Buffer> | AsyncIterable<Buffer>;
  /** The whole file, to compare with a copy already stored (rare). */
  plain: () => Buffer;
}

async function storeWal(repo: Repository, src: WalSource, where: string): Promise<PushResult> {
  const { name } = src;
  const key = walKey(name);
  const storage = repo.storage;
  const base = { name, key, kind: src.kind, bytes: src.bytes };
  let length = 0;
  async function* counted(): AsyncGenerator<Buffer> {
    for await (const piece of src.sealed()) {
      length += piece.length;
      yield piece;
    }
  }

  let exists = false;
  if (storage.capabilities.conditionalPut && !storage.capabilities.remote) {
    // A local repository: the pieces are written as they are made, never held together.
    try {
      await storage.putStream(key, Readable.from(counted()), { ifNoneMatch: true });
    } catch (e) {
      if (!(e instanceof AlreadyExistsError)) throw e;
      exists = true;
    }
  } else {
    const pieces: Buffer[] = [];
    for await (const piece of counted()) pieces.push(piece);
    const sealed = Buffer.concat(pieces);
    if (storage.capabilities.conditionalPut) {
      try {
        await storage.put(key, sealed, { ifNoneMatch: true });
      } catch (e) {
        if (!(e instanceof AlreadyExistsError)) throw e;
        exists = true;
      }
    } else {
      // Racy without server-side if-none-match; two writers of one name are PostgreSQL's
      // archiver and (for `.partial`) `wal stream`, and the comparison below catches a loser.
      exists = (await storage.stat(key)) !== undefined;
      if (!exists) await storage.put(key, sealed);
    }
  }
  if (exists) {
    const r = await compareStored(repo, name, key, src.plain(), where);
    if (r.outcome !== 'replaced') return { ...base, ...r };
    length = r.storedBytes;
  }
  // Crash tests stop here: the object is stored, its length not yet checked.
  await killPoint('wal-push-stored');
  await checkStoredLength(storage, key, length);
  return { ...base, outcome: exists ? 'replaced' : 'stored', storedBytes: length };
}

/** A read buffer and a compressor, reused by one push after another (pushes of one worker overlap, so several). */
interface Slicer {
  buf: Buffer;
  z: ZstdStreamCompressor;
  threads: number;
}
const idleSlicers: Slicer[] = [];

function takeSlicer(threads: number): Slicer {
  const i = idleSlicers.findIndex((s) => s.threads === threads);
  if (i >= 0) return idleSlicers.splice(i, 1)[0];
  return { buf: Buffer.allocUnsafeSlow(SLICE), z: new ZstdStreamCompressor(WAL_LEVEL, SLICE, threads), threads };
}

function openWalFile(path: string): number {
  try {
    return openSync(path, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UsageError(`WAL file ${path} does not exist`, { hint: 'archive_command should pass %p, the path relative to the data directory' });
    throw new StorageError(`cannot read WAL file ${path}: ${(e as Error).message}`);
  }
}

/** Reads from `pos` until `buf` is full or the file ends; returns the bytes read as a view of `buf`. */
function readSlice(fd: number, buf: Buffer, pos: number, where: string): Buffer {
  let n = 0;
  try {
    while (n < buf.length) {
      const got = readSync(fd, buf, n, buf.length - n, pos + n);
      if (got === 0) break;
      n += got;
    }
  } catch (e) {
    throw new StorageError(`cannot read WAL file ${where}: ${(e as Error).message}`);
  }
  return buf.subarray(0, n);
}

const readOnPool = promisify(read);

/** `readSlice` on the thread pool. */
async function readSliceAsync(fd: number, buf: Buffer, pos: number, where: string): Promise<Buffer> {
  let n = 0;
  try {
    while (n < buf.length) {
      const { bytesRead } = await readOnPool(fd, buf, n, buf.length - n, pos + n);
      if (bytesRead === 0) break;
      n += bytesRead;
    }
  } catch (e) {
    throw new StorageError(`cannot read WAL file ${where}: ${(e as Error).message}`);
  }
  return buf.subarray(0, n);
}

function changed(where: string): IntegrityError {
  return new IntegrityError(`WAL file ${where} changed size while it was read`, {
    hint: 'PostgreSQL hands archive_command complete files only; check what else writes to it',
  });
}

async function compareStored(repo: Repository, name: string, key: string, data: Buffer, where: string): Promise<{ outcome: PushOutcome; storedBytes: number }> {
  let raw: Buffer;
  try {
    raw = await repo.storage.get(key);
  } catch (e) {
    if (e instanceof NotFoundError) {
      throw new StorageError(`WAL file ${name} was reported as already stored in ${repo.location} but cannot be read back`, {
        hint: 'something else is deleting WAL in the repository (an expire?); run the push again',
      });
    }
    throw e;
  }
  let stored: Buffer;
  try {
    stored = await unsealWal(repo.key, name, raw, `stored WAL file ${key}`);
  } catch (e) {
    if (!(e instanceof IntegrityError)) throw e;
    throw new WalConflictError(`WAL file ${name} is already in ${repo.location} but the stored copy does not authenticate (${e.message}); not overwriting it`, {
      hint: 'run `ferry repo check`; if the stored copy is damaged, move it aside by hand and push again',
    });
  }
  if (stored.equals(data)) return { outcome: 'duplicate', storedBytes: raw.length };
  if (name.endsWith('.partial')) {
    if (covers(stored, data)) return { outcome: 'covered', storedBytes: raw.length };
    if (covers(data, stored)) {
      if (!repo.storage.capabilities.atomicReplace) {
        throw new WalConflictError(`WAL file ${name} extends the stored copy in ${repo.location}, but that storage cannot replace objects atomically`);
      }
      const sealed = sealWal(repo.key, name, data);
      await repo.storage.put(key, sealed);
      return { outcome: 'replaced', storedBytes: sealed.length };
    }
  }
  throw new WalConflictError(
    `WAL file ${name} is already archived in ${repo.location} with DIFFERENT content (${where}: ${data.length} bytes; stored: ${stored.length} bytes); refusing to overwrite it`,
    {
      hint: 'two clusters may be archiving into one repository, or a restored cluster reuses a timeline; give each cluster its own repository (or prefix) and check archive_command',
    },
  );
}

async function checkStoredLength(storage: Storage, key: string, want: number): Promise<void> {
  const st = await storage.stat(key);
  if (!st) throw new StorageError(`WAL object ${key} is missing from ${storage.location} right after it was stored`, { hint: 'check the storage backend; run the push again' });
  if (st.size !== want) {
    throw new StorageError(`WAL object ${key} in ${storage.location} has ${st.size} bytes after the upload, expected ${want}`, {
      hint: 'the storage lost or changed data; run the push again and check the backend',
    });
  }
}

// ---- fetch ------------------------------------------------------------------------

/** Fetches and authenticates one WAL file. Exactly `name`: never a `.partial` in its place. */
export async function fetchWal(repo: Repository, name: string): Promise<Buffer> {
  parseWalName(name);
  const key = walKey(name);
  let raw: Buffer;
  try {
    raw = await repo.storage.get(key);
  } catch (e) {
    if (e instanceof NotFoundError) throw missing(name, repo.location);
    throw e;
  }
  return unsealWal(repo.key, name, raw, `WAL object ${key} in ${repo.location}`);
}

/**
 * `fetchWalTo` for the one-GET-per-file path of restore_command: the GET runs while
 * the repository opens. An unopenable repository (wrong key, wrong URL) is reported
 * as such, never as a missing file: that would end recovery early, silently.
 */
export async function fetchWalOpeningTo(repo: Promise<Repository>, storage: Storage, name: string, dest: string): Promise<number> {
  parseWalName(name);
  const key = walKey(name);
  const [r, raw] = await Promise.allSettled([repo, storage.get(key)]);
  if (r.status === 'rejected') throw r.reason;
  if (raw.status === 'rejected') {
    if (raw.reason instanceof NotFoundError) throw missing(name, storage.location);
    throw raw.reason;
  }
  return unsealWalToFile(r.value.key, name, raw.value, `WAL object ${key} in ${storage.location}`, dest);
}

/** `fetchWal` straight into `dest` (see `unsealWalToFile`); returns the file's size. */
export async function fetchWalTo(repo: Repository, name: string, dest: string): Promise<number> {
  return fetchWalOpeningTo(Promise.resolve(repo), repo.storage, name, dest);
}

/**
 * `unsealWal` into the file `dest`, one slice at a time through a reused buffer (see the
 * module header), atomically: the plaintext goes to a temp file beside `dest`, which is
 * renamed to `dest` only once the whole object has authenticated and decompressed to the
 * size its frame declares, and removed otherwise. No fsync: PostgreSQL makes a restored
 * file durable itself when it keeps it (durable_rename), and a file lost in a crash is
 * fetched again.
 */
export function unsealWalToFile(key: MasterKey, name: string, raw: Buffer, where: string, dest: string): number {
  if (raw.length < 1) throw new IntegrityError(`${where} is empty`);
  const codec = raw[0];
  if (codec !== CODEC_ZSTD && codec !== CODEC_NONE) {
    throw new IntegrityError(`${where} has unknown codec id 0x${codec.toString(16)}`, { hint: 'the repository may have been written by a newer Ferry; upgrade Ferry' });
  }
  const tmp = join(dirname(dest), `.${basename(dest)}.ferry-${randomBytes(6).toString('hex')}.tmp`);
  let fd: number | undefined;
  let published = false;
  try {
    try {
      fd = openSync(tmp, 'wx', 0o600);
    } catch (e) {
      throw new StorageError(`cannot write ${dest}: ${(e as Error).message}`);
    }
    const out = fd;
    let written = 0;
    const write = (piece: Uint8Array): void => {
      try {
        for (let o = 0; o < piece.length; ) o += writeSync(out, piece, o, piece.length - o, written + o);
      } catch (e) {
        throw new StorageError(`cannot write ${dest}: ${(e as Error).message}`);
      }
      written += piece.length;
    };
    const aad = walAad(name, codec);
    if (codec === CODEC_ZSTD) {
      const dz = idleDecompressors.pop() ?? new ZstdStreamDecompressor(SLICE);
      dz.begin();
      let declared: number | undefined | null = null;
      try {
        unsealStream(key.enc, aad, raw.subarray(1), where, (piece) => {
          if (declared === null) declared = frameContentSize(piece, where);
          dz.write(piece, write, where);
        });
      } finally {
        idleDecompressors.push(dz);
      }
      if (declared === null || declared === undefined) throw new IntegrityError(`${where}: zstd frame has no usable content size`);
      if (written !== declared) throw new IntegrityError(`${where} decompressed to ${written} bytes, expected ${declared}`);
    } else {
      unsealStream(key.enc, aad, raw.subarray(1), where, write);
    }
    closeSync(out);
    fd = undefined;
    try {
      renameSync(tmp, dest);
    } catch (e) {
      throw new StorageError(`cannot write ${dest}: ${(e as Error).message}`);
    }
    published = true;
    return written;
  } finally {
    if (fd !== undefined) closeSync(fd);
    if (!published) {
      try {
        unlinkSync(tmp);
      } catch {
        /* not created, or already gone */
      }
    }
  }
}

/** Decompressors reused by one fetch after another (a fetch worker runs several at once). */
const idleDecompressors: ZstdStreamDecompressor[] = [];

export function missing(name: string, location: string): WalMissingError {
  return new WalMissingError(`WAL file ${name} is not in the repository at ${location} (normal at the end of recovery)`);
}

// ---- list ---------------------------------------------------------------------------

export interface WalObject {
  name: string;
  key: string;
  kind: WalKind;
  timeline: number;
  /** Bytes stored (compressed and sealed), not the WAL file's size. */
  size: number;
  /** Time stored, ms since the epoch. */
  mtime: number;
}

export function timelineDir(timeline: number): string {
  return `wal/${timeline.toString(16).toUpperCase().padStart(8, '0')}/`;
}

/** Every WAL object (of one timeline when given), in timeline then name order. */
export async function listWal(storage: Storage, opts: { timeline?: number } = {}): Promise<WalObject[]> {
  const prefix = opts.timeline !== undefined ? timelineDir(opts.timeline) : 'wal/';
  const out: WalObject[] = [];
  for await (const o of listAll(storage, prefix)) {
    const name = o.key.slice(o.key.lastIndexOf('/') + 1);
    let w: WalName;
    try {
      w = parseWalName(name);
    } catch {
      continue; // not a WAL object (nothing else should live here)
    }
    if (walKey(name) !== o.key) continue;
    out.push({ name, key: o.key, kind: w.kind, timeline: w.timeline, size: o.size, mtime: o.mtime });
  }
  return out.sort((a, b) => a.timeline - b.timeline || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Parses `--timeline`: decimal (`2`) or the 8-hex-digit form of WAL names (`00000002`). */
export function parseTimeline(v: string): number {
  const n = /^[0-9A-Fa-f]{8}$/.test(v) ? parseInt(v, 16) : /^\d+$/.test(v) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n) || n < 1 || n > 0xffffffff) throw new UsageError(`--timeline takes a timeline number such as 1 or 00000002, got "${v}"`);
  return n;
}
