/**
 * Packs: many sealed blobs in one storage object, so object stores see few large PUTs.
 *
 *   blob_0 || blob_1 || … || sealedHeader || headerLength(u32 LE) || "FRP1"
 *
 * The header (sealed with AES-256-GCM, associated data "ferry-pack-header-v1")
 * lists, per blob in order: type(1: 0 data, 1 tree) || id(32) || length(u32 LE) ||
 * rawLength(u32 LE). Offsets follow from the order. With the header in each pack,
 * the index can be rebuilt from packs alone. A pack's name is the SHA-256 of its bytes,
 * stored at `data/<first two hex>/<name>`.
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

/** Accumulates sealed blobs in memory until the pack is big enough to upload. */
export class PackBuilder {
  readonly parts: Buffer[] = [];
  readonly entries: PackEntry[] = [];
  size = 0;

  add(type: BlobType, id: Buffer, sealed: Buffer[], rawLength: number): void {
    let len = 0;
    for (const p of sealed) {
      this.parts.push(p);
      len += p.length;
    }
    this.entries.push({ type, id: id.toString('hex'), offset: this.size, length: len, rawLength });
    this.size += len;
  }

  get count(): number {
    return this.entries.length;
  }

  /** Seals the header and returns the pack's bytes (as parts) and its id. */
  finish(key: MasterKey): { id: string; parts: Buffer[]; size: number; entries: PackEntry[] } {
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
    const parts = [...this.parts, sealedHeader, trailer];
    const size = this.size + sealedHeader.length + 8;
    return { id: sha256Hex(parts), parts, size, entries: this.entries };
  }
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

/** How many bytes from the end of a pack to read to get its header (first guess). */
export const HEADER_TAIL_GUESS = 64 * 1024;

export function headerLengthFromTail(tail: Buffer): number {
  return tail.readUInt32LE(tail.length - 8) + 8;
}
