/**
 * The blob index: blob id -> pack, offset, length.
 *
 * On storage: `index/<sha256 of stored bytes>` files, each a sealed, compressed
 * JSON document listing whole packs. Files are only ever added; prune writes a
 * replacement that names the files it supersedes, then deletes those.
 *
 * In memory: one entry per blob in typed arrays, keyed by the first 16 bytes of the
 * id (base64, 22 chars). About 90 bytes per blob: a 10 TB repository of 1 MiB
 * chunks (10 M blobs) needs about 1 GB, a 1 TB one about 100 MB.
 */
import type { BlobType, } from './blob.ts';
import type { PackEntry } from './pack.ts';

export interface IndexedPack {
  id: string;
  size: number;
  blobs: PackEntry[];
}

export interface IndexFile {
  version: 1;
  /** Index files this one replaces (written by prune). */
  supersedes?: string[];
  packs: IndexedPack[];
}

export interface BlobLocation {
  packId: string;
  type: BlobType;
  offset: number;
  length: number;
  rawLength: number;
}

function shortKey(idHex: string): string {
  return Buffer.from(idHex.slice(0, 32), 'hex').toString('base64');
}

export class MasterIndex {
  private readonly slots = new Map<string, number>();
  private packIds: string[] = [];
  private packSizes: number[] = [];
  private readonly packSlot = new Map<string, number>();
  private pack = new Uint32Array(1024);
  private offset = new Float64Array(1024);
  private length = new Uint32Array(1024);
  private raw = new Uint32Array(1024);
  private types = new Uint8Array(1024);
  private n = 0;

  get blobCount(): number {
    return this.n;
  }

  get packCount(): number {
    return this.packIds.length;
  }

  private grow(): void {
    const cap = this.pack.length * 2;
    const g = <T extends Uint32Array | Float64Array | Uint8Array>(a: T, C: new (n: number) => T): T => {
      const b = new C(cap);
      b.set(a);
      return b;
    };
    this.pack = g(this.pack, Uint32Array);
    this.offset = g(this.offset, Float64Array);
    this.length = g(this.length, Uint32Array);
    this.raw = g(this.raw, Uint32Array);
    this.types = g(this.types, Uint8Array);
  }

  addPack(p: IndexedPack): void {
    let ps = this.packSlot.get(p.id);
    if (ps === undefined) {
      ps = this.packIds.length;
      this.packIds.push(p.id);
      this.packSizes.push(p.size);
      this.packSlot.set(p.id, ps);
    }
    for (const b of p.blobs) {
      const k = shortKey(b.id);
      if (this.slots.has(k)) continue; // duplicate copies of a blob: the first one serves
      if (this.n === this.pack.length) this.grow();
      const i = this.n++;
      this.pack[i] = ps;
      this.offset[i] = b.offset;
      this.length[i] = b.length;
      this.raw[i] = b.rawLength;
      this.types[i] = b.type === 'tree' ? 1 : 0;
      this.slots.set(k, i);
    }
  }

  has(idHex: string): boolean {
    return this.slots.has(shortKey(idHex));
  }

  lookup(idHex: string): BlobLocation | undefined {
    const i = this.slots.get(shortKey(idHex));
    if (i === undefined) return undefined;
    return {
      packId: this.packIds[this.pack[i]],
      type: this.types[i] === 1 ? 'tree' : 'data',
      offset: this.offset[i],
      length: this.length[i],
      rawLength: this.raw[i],
    };
  }

  hasPack(packId: string): boolean {
    return this.packSlot.has(packId);
  }

  packSize(packId: string): number | undefined {
    const s = this.packSlot.get(packId);
    return s === undefined ? undefined : this.packSizes[s];
  }

  packs(): string[] {
    return [...this.packIds];
  }
}
