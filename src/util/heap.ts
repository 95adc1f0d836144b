/**
 * The main thread's young generation. V8 grows it up to 32 MB (two 16 MB semi-spaces) when a
 * lot survives a scavenge, which a snapshot's stream of per-chunk objects makes it do; that
 * is a tenth of the 300 MB a 10 GB snapshot may use. Keeping it at its starting 2 MB costs
 * more scavenges of a few live objects each. Called where a command starts moving data (the
 * codec pool's first worker); `wal push` never gets here and does not load node:v8.
 */
import { createRequire } from 'node:module';

let done = false;

export function keepYoungGenerationSmall(): void {
  if (done) return;
  done = true;
  // Read by V8 each time it would grow the space (unlike --max-semi-space-size, fixed at start-up).
  (createRequire(import.meta.url)('node:v8') as typeof import('node:v8')).setFlagsFromString('--semi-space-growth-factor=1');
}
