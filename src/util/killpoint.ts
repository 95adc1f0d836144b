/**
 * Kill points: named places in the product where a crash test can stop the
 * process dead (SIGKILL) to prove Ferry's durability rules hold at that point.
 *
 * Contract with the test harness (test/harness/kill.ts): when the environment
 * variable FERRY_KILL_POINT equals a point's name, the process writes the line
 * `FERRY_KILL_POINT <name>` to stderr when it reaches that point (the
 * FERRY_KILL_POINT_HIT-th time, default the first) and then blocks forever,
 * waiting to be killed. Otherwise a kill point costs one string comparison.
 */
import { writeSync } from 'node:fs';

const hits = new Map<string, number>();

function reached(name: string): boolean {
  if (process.env.FERRY_KILL_POINT !== name) return false;
  const n = (hits.get(name) ?? 0) + 1;
  hits.set(name, n);
  const want = Number(process.env.FERRY_KILL_POINT_HIT ?? '1');
  if (n !== want) return false;
  // A synchronous write: the line must be out before we block.
  writeSync(2, `FERRY_KILL_POINT ${name}\n`);
  return true;
}

/** Marks a kill point in async code. Resolves at once unless FERRY_KILL_POINT names it. */
export function killPoint(name: string): Promise<void> {
  if (!reached(name)) return Promise.resolve();
  // Never resolves; the interval keeps the event loop (and so the process) alive until SIGKILL.
  return new Promise<void>(() => {
    setInterval(() => undefined, 1 << 30);
  });
}

/** Marks a kill point in synchronous code (or a worker thread): blocks the thread until SIGKILL. */
export function killPointSync(name: string): void {
  if (!reached(name)) return;
  const cell = new Int32Array(new SharedArrayBuffer(4));
  for (;;) Atomics.wait(cell, 0, 0);
}
