/**
 * PostgreSQL data page checksums (the algorithm of PostgreSQL's checksum_impl.h,
 * written anew here): 32 interleaved FNV-1a-style sums over the page as 32-bit
 * words, mixed with (x >> 17), two extra rounds of zeros, xor-folded, mixed with
 * the block number and reduced to 1..65535. Used to validate pages while a
 * snapshot reads them, as pgBackRest does.
 */
import { memoryOf } from '../repo/gearscan.ts';
import { PAGE_CHECKSUM_WASM } from './pagechecksum-wasm.ts';

export const BLCKSZ = 8192;
/** Pages per relation segment file (1 GiB / 8 KiB). */
export const RELSEG_PAGES = 131072;

/**
 * The checksum itself runs in WebAssembly SIMD (pagechecksum.wat: the 32 sums as eight
 * 4-lane vectors), about ten times faster than the same loop in JavaScript; a full
 * snapshot checks every page it reads on the main thread, so this was its largest cost.
 * The module works on the memory it is instantiated with: pages in a backup's read buffer
 * (a scannable buffer, repo/gearscan.ts) are checked where they are, through an instance
 * on that buffer's memory; pages from anywhere else are copied, eight at a time, into a
 * 64 KiB memory of this module's own (copying every page cost a full snapshot about as
 * much main-thread time as checking them).
 */
type ChecksumAt = (ptr: number, blkno: number) => number;
const module = new WebAssembly.Module(Buffer.from(PAGE_CHECKSUM_WASM, 'base64'));
const instances = new WeakMap<WebAssembly.Memory, ChecksumAt>();

function checksumIn(memory: WebAssembly.Memory): ChecksumAt {
  let f = instances.get(memory);
  if (!f) {
    f = (new WebAssembly.Instance(module, { env: { memory } }).exports as { checksum: ChecksumAt }).checksum;
    instances.set(memory, f);
  }
  return f;
}

const scratchMemory = new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
const scratch = new Uint8Array(scratchMemory.buffer);
const scratchChecksum = checksumIn(scratchMemory);
const PAGES_AT_ONCE = scratch.length / BLCKSZ;

/** Checksum of one 8 KiB page as PostgreSQL computes it (pd_checksum treated as zero). */
export function pageChecksum(page: Uint8Array, blkno: number): number {
  const memory = memoryOf(page);
  if (memory) return checksumIn(memory)(page.byteOffset, blkno >>> 0);
  scratch.set(page.subarray(0, BLCKSZ), 0);
  return scratchChecksum(0, blkno >>> 0);
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
  const memory = memoryOf(chunk);
  const inPlace = memory ? checksumIn(memory) : undefined;
  for (let first = 0; first < pages; first += PAGES_AT_ONCE) {
    const n = Math.min(PAGES_AT_ONCE, pages - first);
    // Where page `first` is for the module: in the chunk's own memory, or copied to the scratch one.
    let base = inPlace ? chunk.byteOffset + first * BLCKSZ : -1;
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
      if (base < 0) {
        scratch.set(chunk.subarray(first * BLCKSZ, (first + n) * BLCKSZ), 0);
        base = 0;
      }
      if ((inPlace ?? scratchChecksum)(base + i * BLCKSZ, blkno >>> 0) !== dv.getUint16(o + 8, true)) bad.push(blkno);
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
