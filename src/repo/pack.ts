/**
 * Packs: many sealed blobs in one storage object, so object stores see few large PUTs.
 *
 *   blob_0 || blob_1 || … || sealedHeader || headerLength(u32 LE) || "FRP1"
 *
 * The header (sealed with AES-256-GCM, associated data "ferry-pack-header-v1")
 * lists, per blob in order: type(1: 0 data, 1 tree) || id(32) || length(u32 LE) ||
 * rawLength(u32 LE). Offsets follow from the order. With the header in each pack,
 * the index can be rebuilt from packs alone.
 *
 * A pack's name is the SHA-256 of its sealed header and trailer, stored at
 * `data/<first two hex>/<name>`. That authenticates the whole pack without hashing
 * every byte twice: the header lists every blob's id and length, and each blob is
 * sealed with AES-GCM bound to its id, so no byte can change undetected.
 */
import { seal, unseal } from '../codec/encrypt.ts';
import { sha256Hex } from '../codec/hash.ts';
import type { MasterKey } from '../codec/keys.ts';
import { IntegrityError } from '../util/errors.ts';
import type { BlobType } from './blob.ts';

export const PACK_MAGIC = Buffer.from('FRP1');
const HEADER_AAD = Buffer.from('ferry-pack-header-v1');
const ENTRY_BYTES = 41;

export interface PackEntry {
  type: BlobType;
  id: string; // hex
  offset: number;
  length: number;
  rawLength: number;
}

export function packKey(packId: string): string {
  return `data/${packId.slice(0, 2)}/${packId}`;
}

/**
 * Accumulates sealed blobs in one buffer until the pack is big enough to upload.
 * Blobs are copied in right after sealing, while they are still in cache.
 */
export class PackBuilder {
  readonly entries: PackEntry[] = [];
  size = 0;
  private buf: Buffer;

  constructor(buf: Buffer) {
    this.buf = buf;
  }

  /** The buffer behind the pack (to return to a pool once the pack is stored). */
  get buffer(): Buffer {
    return this.buf;
  }

  add(type: BlobType, id: Buffer, sealed: Buffer[], rawLength: number): void {
    let len = 0;
    for (const p of sealed) len += p.length;
    this.ensure(this.size + len);
    let at = this.size;
    for (const p of sealed) at += p.copy(this.buf, at);
    this.entries.push({ type, id: id.toString('hex'), offset: this.size, length: len, rawLength });
    this.size += len;
  }

  private ensure(n: number): void {
    if (n <= this.buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(n, this.buf.length * 2));
    this.buf.copy(bigger, 0, 0, this.size);
    this.buf = bigger;
  }

  get count(): number {
    return this.entries.length;
  }

  /** Seals the header and returns the pack's bytes and its id. */
  finish(key: MasterKey): { id: string; data: Buffer; size: number; entries: PackEntry[] } {
    const h = Buffer.allocUnsafe(this.entries.length * ENTRY_BYTES);
    this.entries.forEach((e, i) => {
      const o = i * ENTRY_BYTES;
      h[o] = e.type === 'tree' ? 1 : 0;
      Buffer.from(e.id, 'hex').copy(h, o + 1);
      h.writeUInt32LE(e.length, o + 33);
      h.writeUInt32LE(e.rawLength, o + 37);
    });
    const sealedHeader = seal(key.enc, HEADER_AAD, h);
    const trailer = Buffer.allocUnsafe(8);
    trailer.writeUInt32LE(sealedHeader.length, 0);
    PACK_MAGIC.copy(trailer, 4);
    const size = this.size + sealedHeader.length + 8;
    this.ensure(size);
    sealedHeader.copy(this.buf, this.size);
    trailer.copy(this.buf, this.size + sealedHeader.length);
    return { id: packIdOf(sealedHeader, trailer), data: this.buf.subarray(0, size), size, entries: this.entries };
  }
}

/** A pack's id: SHA-256 of its sealed header and its 8-byte trailer. */
export function packIdOf(sealedHeader: Buffer, trailer: Buffer): string {
  return sha256Hex([sealedHeader, trailer]);
}

/** The id a whole pack's bytes should have (for verification). */
export function packIdFromBytes(data: Buffer, where: string): string {
  if (data.length < 8 || !data.subarray(data.length - 4).equals(PACK_MAGIC)) throw new IntegrityError(`pack ${where} has no valid trailer`);
  const hlen = data.readUInt32LE(data.length - 8);
  if (hlen + 8 > data.length) throw new IntegrityError(`pack ${where} header length ${hlen} exceeds the pack`);
  return packIdOf(data.subarray(data.length - 8 - hlen, data.length - 8), data.subarray(data.length - 8));
}

/** Reads the header from a whole pack, or from its tail (see `readPackHeader`). */
export function parsePackHeader(key: MasterKey, tail: Buffer, packSize: number, where: string): PackEntry[] {
  if (tail.length < 8 || !tail.subarray(tail.length - 4).equals(PACK_MAGIC)) {
    throw new IntegrityError(`pack ${where} has no valid trailer`);
  }
  const hlen = tail.readUInt32LE(tail.length - 8);
  if (hlen + 8 > tail.length) throw new IntegrityError(`pack ${where} header length ${hlen} exceeds what was read`);
  const sealedHeader = tail.subarray(tail.length - 8 - hlen, tail.length - 8);
  const h = unseal(key.enc, HEADER_AAD, sealedHeader, `header of pack ${where}`);
  if (h.length % ENTRY_BYTES !== 0) throw new IntegrityError(`pack ${where} header has a bad length`);
  const entries: PackEntry[] = [];
  let offset = 0;
  for (let o = 0; o < h.length; o += ENTRY_BYTES) {
    const length = h.readUInt32LE(o + 33);
    entries.push({
      type: h[o] === 1 ? 'tree' : 'data',
      id: h.subarray(o + 1, o + 33).toString('hex'),
      offset,
      length,
      rawLength: h.readUInt32LE(o + 37),
    });
    offset += length;
  }
  if (offset + hlen + 8 !== packSize) throw new IntegrityError(`pack ${where} blobs do not add up to its size`);
  return entries;
}
