/**
 * Structured logs (pino) to stderr. Never log secrets or data: keys, sizes, timings only.
 * pino is loaded on first use, so commands that never log do not pay for it.
 */
import { createRequire } from 'node:module';
import type pinoType from 'pino';

export type Logger = pinoType.Logger;

export function makeLogger(level: string): Logger {
  const pino = createRequire(import.meta.url)('pino') as typeof pinoType;
  return pino({ level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination(2));
}
