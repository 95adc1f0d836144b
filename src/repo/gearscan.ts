/**
 * Scannable buffers: buffers that live in a shared WebAssembly memory of their own, with the
 * gear table in front, so FastCDC's scan (gearscan.wat) runs over them in place at about
 * 3.7 GB/s against 1.15 GB/s for the same loop in JavaScript. The backup reads large files
 * into them (they are SharedArrayBuffers, so the codec workers read them in place too).
 * Any other buffer is scanned in JavaScript, with the same result.
 */
import { GEAR_SCAN_WASM } from './gearscan-wasm.ts';

/** Where a buffer starts in its memory: after the gear table (1 KiB), on a cache line. */
const DATA_AT = 4096;
const PAGE = 65536;

interface Scanner {
  scan: (p: number, normalEnd: number, end: number, maskS: number, maskL: number) => number;
  table: DataView;
  /** The gear table now in the memory (repositories differ). */
  gear?: Uint32Array;
  memory: WebAssembly.Memory;
}

let module: WebAssembly.Module | undefined;
const scanners = new WeakMap<ArrayBufferLike, Scanner>();

/** A buffer of `size` bytes in a shared memory of its own, which FastCDC scans in WebAssembly. */
export function scannableBuffer(size: number): Buffer {
  const pages = Math.ceil((DATA_AT + size) / PAGE);
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  module ??= new WebAssembly.Module(Buffer.from(GEAR_SCAN_WASM, 'base64'));
  const { scan } = new WebAssembly.Instance(module, { env: { memory } }).exports as Pick<Scanner, 'scan'>;
  scanners.set(memory.buffer, { scan, table: new DataView(memory.buffer, 0, 1024), memory });
  return Buffer.from(memory.buffer, DATA_AT, size);
}

/**
 * The shared memory a scannable buffer lives in, for other WebAssembly code to work on it in
 * place (the page checksums of a PostgreSQL snapshot); undefined for any other buffer.
 */
export function memoryOf(buf: Uint8Array): WebAssembly.Memory | undefined {
  return scanners.get(buf.buffer)?.memory;
}

/**
 * Scans buf[from, end) as FastCdc.cut does (normal mask below `normalEnd`), in WebAssembly
 * when `buf` is a scannable buffer: the index just after the cut byte, -1 when there is
 * none, or undefined when `buf` is not scannable (the caller scans in JavaScript).
 */
export function scanInPlace(buf: Uint8Array, gear: Uint32Array, from: number, normalEnd: number, end: number, maskS: number, maskL: number): number | undefined {
  const s = scanners.get(buf.buffer);
  if (!s) return undefined;
  if (s.gear !== gear) {
    for (let i = 0; i < 256; i++) s.table.setUint32(i * 4, gear[i], true); // WebAssembly loads are little-endian
    s.gear = gear;
  }
  const base = buf.byteOffset;
  const r = s.scan(base + from, base + normalEnd, base + end, maskS, maskL);
  return r < 0 ? -1 : r - base;
}
