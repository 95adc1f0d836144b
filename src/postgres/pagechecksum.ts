/**
 * PostgreSQL data page checksums (the algorithm of PostgreSQL's checksum_impl.h,
 * written anew here): 32 interleaved FNV-1a-style sums over the page as 32-bit
 * words, mixed with (x >> 17), two extra rounds of zeros, xor-folded, mixed with
 * the block number and reduced to 1..65535. Used to validate pages while a
 * snapshot reads them, as pgBackRest does.
 */

const N_SUMS = 32;
const FNV_PRIME = 16777619;
const BASE = new Uint32Array([
  0x5b1f36e9, 0xb8525960, 0x02ab50aa, 0x1de66d2a, 0x79ff467a, 0x9bb9f8a3, 0x217e7cd2, 0x83e13d2c,
  0xf8d4474f, 0xe39eb970, 0x42c6ae16, 0x993216fa, 0x7b093b5d, 0x98daff3c, 0xf718902a, 0x0b1c9cdb,
  0xe58f764b, 0x187636bc, 0x5d7b3bb1, 0xe73de7de, 0x92bec979, 0xcca6c0b2, 0x304a0979, 0x85aa43d4,
  0x783125bb, 0x6ca8eaa2, 0xe407eac6, 0x4b5cfc3e, 0x9fbf8c76, 0x15ca20be, 0xf2ca9fd3, 0x959bd756,
]);

export const BLCKSZ = 8192;
/** Pages per relation segment file (1 GiB / 8 KiB). */
export const RELSEG_PAGES = 131072;

const sums = new Uint32Array(N_SUMS);

/** Checksum of one 8 KiB page as PostgreSQL computes it (pd_checksum treated as zero). */
export function pageChecksum(page: Uint8Array, blkno: number): number {
  const words = new Uint32Array(page.buffer, page.byteOffset, BLCKSZ / 4);
  sums.set(BASE);
  const rows = BLCKSZ / (4 * N_SUMS);
  for (let i = 0; i < rows; i++) {
    const base = i * N_SUMS;
    for (let j = 0; j < N_SUMS; j++) {
      let v = words[base + j];
      // pd_checksum is the low half of word 2 (little-endian): computed as if zero.
      if (base + j === 2) v &= 0xffff0000;
      const t = (sums[j] ^ v) >>> 0;
      sums[j] = (Math.imul(t, FNV_PRIME) ^ (t >>> 17)) >>> 0;
    }
  }
  for (let r = 0; r < 2; r++) {
    for (let j = 0; j < N_SUMS; j++) {
      const t = sums[j] >>> 0;
      sums[j] = (Math.imul(t, FNV_PRIME) ^ (t >>> 17)) >>> 0;
    }
  }
  let result = 0;
  for (let j = 0; j < N_SUMS; j++) result ^= sums[j];
  result = (result ^ blkno) >>> 0;
  return (result % 65535) + 1;
}

const scratch = new Uint8Array(BLCKSZ);

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
  for (let o = 0; o + BLCKSZ <= chunk.length; o += BLCKSZ) {
    let page = chunk.subarray(o, o + BLCKSZ);
    if (page.byteOffset % 4 !== 0) {
      scratch.set(page);
      page = scratch;
    }
    const blkno = segno * RELSEG_PAGES + (offset + o) / BLCKSZ;
    // A new page (pd_upper = 0) must be all zeros and has no checksum yet.
    if (page[14] === 0 && page[15] === 0) {
      if (!allZero(page)) bad.push(blkno);
      continue;
    }
    const lsn = (BigInt(page[0] | (page[1] << 8) | (page[2] << 16) | (page[3] << 24)) & 0xffffffffn) << 32n | BigInt((page[4] | (page[5] << 8) | (page[6] << 16) | (page[7] << 24)) >>> 0);
    if (lsn >= startLsn) continue;
    const stored = page[8] | (page[9] << 8);
    if (pageChecksum(page, blkno) !== stored) bad.push(blkno);
  }
  return bad;
}
