/**
 * The buffers a restore reads pack ranges into: reused, and lent to the codec workers, so
 * the workers open blobs where they were read. Without them every range was a fresh buffer
 * (page faults, and external memory that kept the main thread in full GCs) which the main
 * thread then copied again into a worker's input slab.
 *
 * Two sizes: ranges of small files fit the small buffers, the ranges of large files (up to
 * the restore's largest range) the large ones. A range larger than both gets a buffer of
 * its own, not lent (its bytes are copied to the worker as before).
 */
import type { CodecPool } from '../codec/pool.ts';
import { BufferPool } from '../util/pool.ts';

export class RangeBuffers {
  private readonly small: BufferPool;
  private readonly large: BufferPool;

  constructor(codec: CodecPool, smallSize: number, smallCount: number, largeSize: number, largeCount: number) {
    const lent = (n: number) => codec.lend(Buffer.from(new SharedArrayBuffer(n)));
    this.small = new BufferPool(smallSize, smallCount, lent);
    this.large = new BufferPool(largeSize, largeCount, lent);
  }

  /**
   * A buffer of at least `n` bytes, waiting while all of its size are taken; undefined when
   * `n` is larger than the large buffers (read into a buffer of the storage's own then).
   * Give it back with `give` once no job reads from it any more.
   */
  async take(n: number): Promise<Buffer | undefined> {
    if (n <= this.small.size) return this.small.take();
    if (n <= this.large.size) return this.large.take();
    return undefined;
  }

  give(b: Buffer): void {
    if (b.length === this.small.size) this.small.give(b);
    else this.large.give(b);
  }
}
