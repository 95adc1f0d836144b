/**
 * Small concurrency tools: bounded parallel map and a counting semaphore.
 */

/** Runs `fn` over `items` with at most `limit` in flight; rejects on the first failure. */
export async function mapLimit<T>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (next < items.length && !failed) {
      const i = next++;
      try {
        await fn(items[i], i);
      } catch (e) {
        failed = true;
        throw e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
}

export class Semaphore {
  private waiters: (() => void)[] = [];
  private inUse = 0;
  constructor(private readonly limit: number) {}

  async acquire(): Promise<void> {
    if (this.inUse < this.limit) {
      this.inUse++;
      return;
    }
    await new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  release(): void {
    const w = this.waiters.shift();
    if (w) w();
    else this.inUse--;
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    await this.acquire();
    try {
      return await fn();
    } finally {
      this.release();
    }
  }
}

/**
 * A budget of bytes in flight: `acquire(n)` waits until n more bytes fit (a single
 * request larger than the whole budget is let through alone, so nothing deadlocks).
 */
export class ByteBudget {
  private used = 0;
  private waiters: { n: number; resolve: () => void }[] = [];
  constructor(private readonly limit: number) {}

  async acquire(n: number): Promise<void> {
    if (this.used === 0 || (this.used + n <= this.limit && this.waiters.length === 0)) {
      this.used += n;
      return;
    }
    await new Promise<void>((resolve) => this.waiters.push({ n, resolve }));
  }

  release(n: number): void {
    this.used -= n;
    while (this.waiters.length) {
      const w = this.waiters[0];
      if (this.used !== 0 && this.used + w.n > this.limit) break;
      this.waiters.shift();
      this.used += w.n;
      w.resolve();
    }
  }
}
