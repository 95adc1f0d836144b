/**
 * Writing restored data to files from the codec workers.
 *
 * Large files are written with O_DIRECT where the filesystem allows it: straight from
 * memory to the device, without copying every byte into newly allocated page cache. On
 * this kind of machine (a VM) that copy ran at under 1 GB/s, because each fresh page of
 * guest memory is first faulted in by the host, and it was the largest single cost of a
 * restore; the data has to reach the disk before the restore's final sync anyway.
 *
 * O_DIRECT needs the buffer, the file offset and the length aligned to the device's block
 * size. The codec pool's slabs are WebAssembly memories (mapped on their own, so their
 * first byte is page-aligned), and the worker lays each plaintext out at a slab offset
 * congruent to its file position modulo ALIGN, so the whole pages of a run are aligned in
 * memory and on disk and are written direct from the slab, with no copy; the partial
 * pages at either end go through the page cache (the ordinary descriptor). Direct writes
 * run on libuv's threads while the worker opens the next batch. A filesystem that refuses
 * them (EINVAL: tmpfs, some overlays) turns them off for the rest of the run.
 */
import { write, writeSync } from 'node:fs';

/** Alignment of direct writes: the page size, a multiple of every common logical block size. */
export const ALIGN = 4096;
/** Runs shorter than this go through the page cache whole. */
const DIRECT_MIN = 64 << 10;

/** Positional writes that finish: writeSync may write less than asked (a signal, a full pipe). */
function writeFully(fd: number, buf: Uint8Array, offset: number, length: number, position: number): void {
  let done = 0;
  while (done < length) done += writeSync(fd, buf, offset + done, length - done, position + done);
}

function writeAsync(fd: number, buf: Uint8Array, offset: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => write(fd, buf, offset, length, position, (err, n) => (err ? reject(err) : resolve(n))));
}

let direct = true;

/**
 * Writes `length` bytes of `buf` from `offset` to file position `position`: the whole pages
 * through `directFd` (the same file opened with O_DIRECT) when `buf` at `offset` is aligned
 * like `position`, the rest through `fd`. Resolves when every byte is written.
 */
export async function writeRun(fd: number, directFd: number | undefined, buf: Buffer, offset: number, length: number, position: number): Promise<void> {
  const start = Math.ceil(position / ALIGN) * ALIGN;
  const end = Math.floor((position + length) / ALIGN) * ALIGN;
  const aligned = (buf.byteOffset + offset) % ALIGN === position % ALIGN;
  if (directFd === undefined || !direct || !aligned || length < DIRECT_MIN || end - start < ALIGN) {
    writeFully(fd, buf, offset, length, position);
    return;
  }
  if (start > position) writeFully(fd, buf, offset, start - position, position);
  if (position + length > end) writeFully(fd, buf, offset + (end - position), position + length - end, end);
  let p = start;
  while (p < end) {
    try {
      p += await writeAsync(directFd, buf, offset + (p - position), end - p, p);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EINVAL') throw e;
      direct = false; // not supported here (or a short write left p unaligned): the page cache from now on
      writeFully(fd, buf, offset + (p - position), end - p, p);
      return;
    }
  }
}

/** Where to lay out a plaintext in a slab so that it is aligned like its file position. */
export function alignedAt(at: number, position: number): number {
  return at + ((((position - at) % ALIGN) + ALIGN) % ALIGN);
}
