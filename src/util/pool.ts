/**
 * A pool of equally sized large buffers. Reusing them avoids the page faults and
 * external-memory GC pressure of allocating fresh multi-MiB buffers per slice,
 * which on this kind of machine cost more than the copying itself.
 */
export class BufferPool {
  private readonly free: Buffer[] = [];
  private out = 0;
  private waiters: ((b: Buffer) => void)[] = [];
  constructor(
    readonly size: number,
    /** At most this many buffers exist at once: `take` waits beyond it (a hard memory bound). */
    private readonly max: number,
    /** Makes a buffer (default Buffer.allocUnsafeSlow; the backup lends its buffers to the codec workers). */
    private readonly alloc: (size: number) => Buffer = (n) => Buffer.allocUnsafeSlow(n),
  ) {}

  async take(): Promise<Buffer> {
    const b = this.free.pop();
    if (b) {
      this.out++;
      return b;
    }
    if (this.out < this.max) {
      this.out++;
      return this.alloc(this.size);
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Takes a buffer without waiting (allocating past the bound if need be). */
  takeNow(): Buffer {
    this.out++;
    return this.free.pop() ?? this.alloc(this.size);
  }

  give(b: Buffer): void {
    if (b.length !== this.size) return;
    const w = this.waiters.shift();
    if (w) w(b);
    else {
      this.out--;
      this.free.push(b);
    }
  }
}
