/** Positional writes that finish: writeSync may write less than asked (a signal, a full pipe). */
import { writeSync } from 'node:fs';

export function writeFully(fd: number, buf: Uint8Array, offset: number, length: number, position: number): void {
  let done = 0;
  while (done < length) done += writeSync(fd, buf, offset + done, length - done, position + done);
}
