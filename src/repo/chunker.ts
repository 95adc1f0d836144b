/**
 * Chunkers cut a byte stream into blobs.
 *
 * - FastCDC (content-defined, normalized chunking level 2) for dump streams and
 *   ordinary files: an insertion shifts only nearby boundaries, so edited files
 *   and week-to-week dumps dedup. The gear table is derived from the repository's
 *   chunker seed, so boundaries (and thus sizes) differ between repositories.
 * - Fixed-size chunks for files that change in place (PostgreSQL relation files).
 *
 * Both are streaming: `push()` buffers and returns the chunks it could cut,
 * `finish()` returns the rest. Chunks are subarrays of the pushed buffers; callers
 * must not reuse pushed buffers.
 */
import { createHash } from 'node:crypto';
import { scanInPlace } from './gearscan.ts';

export interface ChunkerParams {
  min: number;
  avg: number;
  max: number;
}

export const DEFAULT_CHUNKER: ChunkerParams = { min: 512 * 1024, avg: 1024 * 1024, max: 4 * 1024 * 1024 };

export interface Chunker {
  push(data: Buffer): Buffer[];
  finish(): Buffer[];
  /**
   * Stateless form for readers that manage their own buffers: cuts what it can in
   * `buf` and returns the uncut tail, which the caller prepends to the next read.
   * With `eof`, the tail is cut too (rest is empty).
   */
  split(buf: Buffer, eof: boolean): { chunks: Buffer[]; rest: Buffer };
}

const EMPTY = Buffer.alloc(0);

export function gearTable(seed: Buffer): Uint32Array {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i += 8) {
    const d = createHash('sha256').update(seed).update(Buffer.from([i])).digest();
    for (let j = 0; j < 8; j++) t[i + j] = d.readUInt32LE(j * 4);
  }
  return t;
}

function log2(n: number): number {
  return Math.round(Math.log2(n));
}

/** A mask with `bits` one-bits at the top of a 32-bit word (those depend on the last 32 bytes). */
function topMask(bits: number): number {
  return bits >= 32 ? 0xffffffff | 0 : (~((1 << (32 - bits)) - 1)) | 0;
}

export class FastCdc implements Chunker {
  private pending: Buffer[] = [];
  private pendingLen = 0;
  private readonly maskS: number;
  private readonly maskL: number;

  constructor(
    private readonly p: ChunkerParams,
    private readonly gear: Uint32Array,
  ) {
    const bits = log2(p.avg);
    this.maskS = topMask(bits + 2);
    this.maskL = topMask(bits - 2);
  }

  /**
   * Cut point in buf[start, end): returns the chunk length, or -1 when no stable
   * cut exists yet (fewer than `max` bytes and the stream is not finished).
   */
  private cut(buf: Buffer, start: number, end: number, eof: boolean): number {
    const { min, max, avg } = this.p;
    let n = end - start;
    if (n <= min) return eof ? n : -1;
    const limited = n >= max;
    if (limited) n = max;
    const normal = n < avg ? n : avg;
    const g = this.gear;
    const ms = this.maskS;
    const ml = this.maskL;
    const fast = scanInPlace(buf, g, start + min, start + normal, start + n, ms, ml);
    if (fast !== undefined) return fast >= 0 ? fast - start : limited || eof ? n : -1;
    let h = 0;
    let i = start + min;
    const nEnd = start + normal;
    const fEnd = start + n;
    for (; i < nEnd; i++) {
      h = ((h << 1) + g[buf[i]]) | 0;
      if ((h & ms) === 0) return i - start + 1;
    }
    for (; i < fEnd; i++) {
      h = ((h << 1) + g[buf[i]]) | 0;
      if ((h & ml) === 0) return i - start + 1;
    }
    return limited || eof ? n : -1;
  }

  push(data: Buffer): Buffer[] {
    if (data.length === 0) return [];
    let buf: Buffer;
    if (this.pendingLen > 0) {
      this.pending.push(data);
      buf = Buffer.concat(this.pending, this.pendingLen + data.length);
    } else buf = data;
    this.pending = [];
    this.pendingLen = 0;
    return this.scan(buf, false);
  }

  finish(): Buffer[] {
    if (this.pendingLen === 0) return [];
    const buf = Buffer.concat(this.pending, this.pendingLen);
    this.pending = [];
    this.pendingLen = 0;
    return this.scan(buf, true);
  }

  split(buf: Buffer, eof: boolean): { chunks: Buffer[]; rest: Buffer } {
    const chunks: Buffer[] = [];
    let pos = 0;
    while (pos < buf.length) {
      const len = this.cut(buf, pos, buf.length, eof);
      if (len < 0) break;
      chunks.push(buf.subarray(pos, pos + len));
      pos += len;
    }
    return { chunks, rest: pos < buf.length ? buf.subarray(pos) : EMPTY };
  }

  private scan(buf: Buffer, eof: boolean): Buffer[] {
    const { chunks, rest } = this.split(buf, eof);
    if (rest.length) {
      this.pending = [rest];
      this.pendingLen = rest.length;
    }
    return chunks;
  }
}

/** Fixed-size chunks, aligned to the start of the stream (PostgreSQL pages: multiples of 8 KiB). */
export class FixedChunker implements Chunker {
  private pending: Buffer[] = [];
  private pendingLen = 0;
  constructor(private readonly size: number) {}

  push(data: Buffer): Buffer[] {
    if (data.length === 0) return [];
    let buf = data;
    if (this.pendingLen > 0) {
      buf = Buffer.concat([...this.pending, data]);
      this.pending = [];
      this.pendingLen = 0;
    }
    const out: Buffer[] = [];
    let pos = 0;
    while (buf.length - pos >= this.size) {
      out.push(buf.subarray(pos, pos + this.size));
      pos += this.size;
    }
    if (pos < buf.length) {
      this.pending = [buf.subarray(pos)];
      this.pendingLen = buf.length - pos;
    }
    return out;
  }

  finish(): Buffer[] {
    if (this.pendingLen === 0) return [];
    const b = Buffer.concat(this.pending);
    this.pending = [];
    this.pendingLen = 0;
    return [b];
  }

  split(buf: Buffer, eof: boolean): { chunks: Buffer[]; rest: Buffer } {
    const chunks: Buffer[] = [];
    let pos = 0;
    while (buf.length - pos >= this.size) {
      chunks.push(buf.subarray(pos, pos + this.size));
      pos += this.size;
    }
    if (eof && pos < buf.length) {
      chunks.push(buf.subarray(pos));
      pos = buf.length;
    }
    return { chunks, rest: pos < buf.length ? buf.subarray(pos) : EMPTY };
  }
}
