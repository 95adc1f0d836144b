/**
 * A pool of equally sized large buffers. Reusing them avoids the page faults and
 * external-memory GC pressure of allocating fresh multi-MiB buffers per slice,
 * which on this kind of machine cost more than the copying itself.
 */
export class BufferPool {
  private readonly free: Buffer[] = [];
  constructor(
    readonly size: number,
    private readonly keep: number,
  ) {}

  take(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafeSlow(this.size);
  }

  give(b: Buffer): void {
    if (b.length === this.size && this.free.length < this.keep) this.free.push(b);
  }
}
