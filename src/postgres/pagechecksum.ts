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
const WORDS = BLCKSZ / 4;

/** Checksum of one 8 KiB page as PostgreSQL computes it (pd_checksum treated as zero). */
export function pageChecksum(page: Uint8Array, blkno: number): number {
  if (page.byteOffset % 4 !== 0) page = Uint8Array.from(page);
  return checksumWords(new Uint32Array(page.buffer, page.byteOffset, WORDS), 0, blkno);
}

/** pageChecksum of the page at word `at` of `words` (no allocation: the snapshot's hot path). */
function checksumWords(words: Uint32Array, at: number, blkno: number): number {
  // The first row, with pd_checksum (the low half of word 2, little-endian) as zero.
  for (let j = 0; j < N_SUMS; j++) {
    const t = BASE[j] ^ (j === 2 ? words[at + 2] & 0xffff0000 : words[at + j]);
    sums[j] = Math.imul(t, FNV_PRIME) ^ (t >>> 17);
  }
  for (let i = at + N_SUMS, end = at + WORDS; i < end; i += N_SUMS) {
    for (let j = 0; j < N_SUMS; j++) {
      const t = sums[j] ^ words[i + j];
      sums[j] = Math.imul(t, FNV_PRIME) ^ (t >>> 17);
    }
  }
  let result = 0;
  for (let j = 0; j < N_SUMS; j++) {
    let t = sums[j];
    t = Math.imul(t, FNV_PRIME) ^ (t >>> 17);
    t = Math.imul(t, FNV_PRIME) ^ (t >>> 17);
    result ^= t;
  }
  result = (result ^ blkno) >>> 0;
  return (result % 65535) + 1;
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
  let buf = chunk;
  if (buf.byteOffset % 4 !== 0) buf = Uint8Array.from(chunk);
  const words = new Uint32Array(buf.buffer, buf.byteOffset, Math.floor(buf.length / 4));
  for (let o = 0; o + BLCKSZ <= buf.length; o += BLCKSZ) {
    const w = o / 4;
    const blkno = segno * RELSEG_PAGES + (offset + o) / BLCKSZ;
    // A new page (pd_upper = 0) must be all zeros and has no checksum yet.
    if (buf[o + 14] === 0 && buf[o + 15] === 0) {
      if (!allZero(buf.subarray(o, o + BLCKSZ))) bad.push(blkno);
      continue;
    }
    // pd_lsn: xlogid (high half) then xrecoff, each a little-endian uint32.
    const hi = words[w];
    const lo = words[w + 1];
    if (hi > startHi || (hi === startHi && lo >= startLo)) continue;
    const stored = buf[o + 8] | (buf[o + 9] << 8);
    if (checksumWords(words, w, blkno) !== stored) bad.push(blkno);
  }
  return bad;
}
