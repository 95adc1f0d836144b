/**
 * Structured logs (pino) to stderr. Never log secrets or data: keys, sizes, timings only.
 */
import pino from 'pino';

export type Logger = pino.Logger;

export function makeLogger(level: string): Logger {
  return pino({ level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination(2));
}
