/**
 * PostgreSQL data page checksums (the algorithm of PostgreSQL's checksum_impl.h,
 * written anew here): 32 interleaved FNV-1a-style sums over the page as 32-bit
 * words, mixed with (x >> 17), two extra rounds of zeros, xor-folded, mixed with
 * the block number and reduced to 1..65535. Used to validate pages while a
 * snapshot reads them, as pgBackRest does.
 */
import { PAGE_CHECKSUM_WASM } from './pagechecksum-wasm.ts';

export const BLCKSZ = 8192;
/** Pages per relation segment file (1 GiB / 8 KiB). */
export const RELSEG_PAGES = 131072;

/**
 * The checksum itself runs in WebAssembly SIMD (pagechecksum.wat: the 32 sums as eight
 * 4-lane vectors), about ten times faster than the same loop in JavaScript; a full
 * snapshot checks every page it reads on the main thread, so this was its largest cost.
 * Pages are copied into the module's 64 KiB memory, eight at a time.
 */
const wasm = new WebAssembly.Instance(new WebAssembly.Module(Buffer.from(PAGE_CHECKSUM_WASM, 'base64'))).exports as {
  memory: WebAssembly.Memory;
  checksum: (ptr: number, blkno: number) => number;
};
const mem = new Uint8Array(wasm.memory.buffer);
const PAGES_AT_ONCE = mem.length / BLCKSZ;

/** Checksum of one 8 KiB page as PostgreSQL computes it (pd_checksum treated as zero). */
export function pageChecksum(page: Uint8Array, blkno: number): number {
  mem.set(page.subarray(0, BLCKSZ), 0);
  return wasm.checksum(0, blkno >>> 0);
}

function allZero(page: Uint8Array): boolean {
  for (let i = 0; i < page.length; i++) if (page[i] !== 0) return false;
  return true;
}

/**
 * Validates the pages in `chunk` (starting at byte `offset` of a relation segment file
 * numbered `segno`). Pages whose LSN is at or after `startLsn` may be mid-write (they
 * will be replayed from WAL) and are skipped. Returns the block numbers that fail.
 */
export function badPages(chunk: Uint8Array, offset: number, segno: number, startLsn: bigint): number[] {
  const bad: number[] = [];
  if (offset % BLCKSZ !== 0) return bad;
  const startHi = Number(startLsn >> 32n);
  const startLo = Number(startLsn & 0xffffffffn);
  const dv = new DataView(chunk.buffer, chunk.byteOffset, chunk.length);
  const pages = Math.floor(chunk.length / BLCKSZ);
  for (let first = 0; first < pages; first += PAGES_AT_ONCE) {
    const n = Math.min(PAGES_AT_ONCE, pages - first);
    let copied = false;
    for (let i = 0; i < n; i++) {
      const o = (first + i) * BLCKSZ;
      const blkno = segno * RELSEG_PAGES + (offset + o) / BLCKSZ;
      // A new page (pd_upper = 0) must be all zeros and has no checksum yet.
      if (chunk[o + 14] === 0 && chunk[o + 15] === 0) {
        if (!allZero(chunk.subarray(o, o + BLCKSZ))) bad.push(blkno);
        continue;
      }
      // pd_lsn: xlogid (high half) then xrecoff, each a little-endian uint32.
      const hi = dv.getUint32(o, true);
      const lo = dv.getUint32(o + 4, true);
      if (hi > startHi || (hi === startHi && lo >= startLo)) continue;
      if (!copied) {
        mem.set(chunk.subarray(first * BLCKSZ, (first + n) * BLCKSZ), 0);
        copied = true;
      }
      if (wasm.checksum(i * BLCKSZ, blkno >>> 0) !== dv.getUint16(o + 8, true)) bad.push(blkno);
    }
  }
  return bad;
}

/**
 * True when `chunk` is whole pages, every one initialised (pd_upper set) with an LSN before
 * `lsn`: PostgreSQL has not changed them (in any WAL-logged way) since then. Used to skip
 * chunks of a relation file unchanged since the parent snapshot started (see snapshot.ts).
 */
export function pagesOlderThan(chunk: Uint8Array, lsn: bigint): boolean {
  if (chunk.length === 0 || chunk.length % BLCKSZ !== 0) return false;
  const hiMax = Number(lsn >> 32n);
  const loMax = Number(lsn & 0xffffffffn);
  const dv = new DataView(chunk.buffer, chunk.byteOffset, chunk.length);
  for (let o = 0; o < chunk.length; o += BLCKSZ) {
    if (dv.getUint16(o + 14, true) === 0) return false; // a new page: no LSN to go by
    const hi = dv.getUint32(o, true);
    if (hi > hiMax || (hi === hiMax && dv.getUint32(o + 4, true) >= loMax)) return false;
  }
  return true;
}
