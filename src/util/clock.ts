/**
 * The one source of time and randomness. Domain code takes a Clock instead of
 * calling Date.now() or crypto.randomBytes(), so retention, schedules and drills
 * are tested by moving a clock rather than sleeping.
 */
import { randomBytes } from 'node:crypto';

export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  /** Cryptographically strong random bytes. */
  random(n: number): Buffer;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  random: (n) => randomBytes(n),
};

/** A clock for tests: time moves only when told. */
export class ManualClock implements Clock {
  constructor(private t: number = Date.UTC(2026, 0, 1)) {}
  now(): number {
    return this.t;
  }
  advance(ms: number): void {
    this.t += ms;
  }
  set(ms: number): void {
    this.t = ms;
  }
  random(n: number): Buffer {
    return randomBytes(n);
  }
}

export const DAY_MS = 86_400_000;
