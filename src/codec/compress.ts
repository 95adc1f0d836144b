/**
 * Compression stage: zstd through the native zstd-napi binding, with reusable
 * contexts (creating a context per call costs more than compressing a 64 KiB page).
 * The hot path runs these in worker threads (codec/pool.ts); small documents
 * (index files, manifests) are compressed on the calling thread.
 *
 * Codec ids are stored in each blob's header and are never reused:
 *   0x01 = stored (no compression), 0x02 = zstd.
 */
import { createRequire } from 'node:module';
import type * as Binding from 'zstd-napi/binding.js';
import { IntegrityError } from '../util/errors.ts';

export const CODEC_NONE = 0x01;
export const CODEC_ZSTD = 0x02;

export const DEFAULT_LEVEL = 3;

const binding = createRequire(import.meta.url)('zstd-napi/binding.js') as typeof Binding;

export interface Compressed {
  codec: number;
  data: Buffer;
}

/** A reusable compressor: one zstd context and one scratch buffer. Not thread-safe; one per thread. */
export class Zstd {
  private readonly cctx = new binding.CCtx();
  private readonly dctx = new binding.DCtx();
  private scratch = Buffer.alloc(0);

  constructor(private readonly level: number = DEFAULT_LEVEL) {}

  /**
   * Compresses `plain`; the result may be a view of the scratch buffer, valid until the
   * next call. Falls back to the plain bytes when zstd does not make them smaller.
   * `level` overrides the context's level for this call.
   */
  compressView(plain: Uint8Array, level: number = this.level): { codec: number; data: Uint8Array } {
    if (plain.length < 64 || level <= 0) return { codec: CODEC_NONE, data: plain };
    const bound = binding.compressBound(plain.length);
    if (this.scratch.length < bound) this.scratch = Buffer.allocUnsafeSlow(bound);
    const n = this.cctx.compress(this.scratch, plain, level);
    if (n >= plain.length) return { codec: CODEC_NONE, data: plain };
    return { codec: CODEC_ZSTD, data: this.scratch.subarray(0, n) };
  }

  /**
   * Decompresses into `dst` (exactly `dst.length` bytes expected). `what` names the input in
   * errors; a function is called only for one.
   */
  decompressInto(codec: number, src: Uint8Array, dst: Uint8Array, what: string | (() => string)): void {
    const where = (): string => (typeof what === 'string' ? what : what());
    if (codec === CODEC_NONE) {
      if (src.length !== dst.length) throw new IntegrityError(`${where()} has the wrong length`);
      dst.set(src);
      return;
    }
    if (codec !== CODEC_ZSTD) throw unknownCodec(codec);
    let n: number;
    try {
      n = this.dctx.decompress(dst, src);
    } catch (e) {
      throw new IntegrityError(`${where()} does not decompress: ${(e as Error).message}`);
    }
    if (n !== dst.length) throw new IntegrityError(`${where()} decompressed to ${n} bytes, expected ${dst.length}`);
  }
}

/**
 * Streaming zstd for one large input at a time, through one reused output buffer: the
 * caller feeds slices and gets compressed pieces back, so a 16 MiB WAL segment is never
 * held whole. On this kind of machine (a VM) every fresh page of memory costs about
 * 2.5 ms per MiB to fault in, which made a whole-file read plus one-shot compression
 * several times slower than the compression itself. The frame records the content size,
 * so `decompress` (which needs it) reads what this writes.
 */
export class ZstdStreamCompressor {
  private readonly cctx = new binding.CCtx();
  private readonly out: Buffer;

  /**
   * `threads` > 1: zstd compresses on that many threads of its own (ZSTD_c_nbWorkers, jobs of
   * a few MiB), and `write` returns as soon as zstd has taken the input: the caller's thread
   * goes on with other work (reading, other pushes) meanwhile.
   */
  constructor(
    private readonly level: number,
    slice: number,
    threads = 0,
  ) {
    this.out = Buffer.allocUnsafeSlow(binding.compressBound(slice) + 1024);
    if (threads > 1) {
      this.cctx.setParameter(binding.CParameter.nbWorkers, threads);
      // 1 MiB jobs (zstd's default for level 1 is larger): half the memory per context
      // (about 6 MiB instead of 11), as fast on WAL segments.
      this.cctx.setParameter(binding.CParameter.jobSize, 1 << 20);
    }
  }

  /** Starts a new frame of exactly `size` bytes (an unfinished frame is dropped). */
  begin(size: number): void {
    this.cctx.reset(binding.ResetDirective.sessionOnly);
    this.cctx.setParameter(binding.CParameter.compressionLevel, this.level);
    this.cctx.setPledgedSrcSize(size);
  }

  /**
   * Compresses `src`, the last slice of the frame when `end`. `emit` gets views of the
   * reused output buffer, valid only during the call.
   */
  write(src: Uint8Array, end: boolean, emit: (piece: Uint8Array) => void): void {
    let rest = src;
    for (;;) {
      let r: [number, number, number];
      try {
        r = this.cctx.compressStream2(this.out, rest, end ? binding.EndDirective.end : binding.EndDirective.continue);
      } catch (e) {
        // zstd refuses more or fewer bytes than begin() announced: the input changed size.
        throw new IntegrityError(`the input changed size while it was compressed (${(e as Error).message})`);
      }
      const [left, produced, consumed] = r;
      if (produced > 0) emit(this.out.subarray(0, produced));
      rest = rest.subarray(consumed);
      if (end ? left === 0 : rest.length === 0) return;
    }
  }
}

/**
 * Streaming zstd decompression through one reused output buffer (the counterpart of
 * ZstdStreamCompressor): `emit` gets views valid only during the call.
 */
export class ZstdStreamDecompressor {
  private readonly dctx = new binding.DCtx();
  private readonly out: Buffer;

  constructor(slice: number) {
    this.out = Buffer.allocUnsafeSlow(slice);
  }

  /** Starts a new frame (a frame left unfinished by an error is dropped). */
  begin(): void {
    this.dctx.reset(binding.ResetDirective.sessionOnly);
  }

  write(src: Uint8Array, emit: (piece: Uint8Array) => void, where: string): void {
    let rest = src;
    for (;;) {
      let r: [number, number, number];
      try {
        r = this.dctx.decompressStream(this.out, rest);
      } catch (e) {
        throw new IntegrityError(`${where} does not decompress: ${(e as Error).message}`);
      }
      const [, produced, consumed] = r;
      if (produced > 0) emit(this.out.subarray(0, produced));
      rest = rest.subarray(consumed);
      // Done with this input once it is consumed and the output buffer was not filled
      // (a full buffer may mean zstd holds more output for the same input).
      if (rest.length === 0 && produced < this.out.length) return;
    }
  }
}

/** The content size the zstd frame starting `frame` declares, or undefined when it does not. */
export function frameContentSize(frame: Uint8Array, where: string): number | undefined {
  let size: number | bigint | null | undefined;
  try {
    size = binding.getFrameContentSize(frame);
  } catch (e) {
    throw new IntegrityError(`${where} does not decompress: ${(e as Error).message}`);
  }
  return size === null || size === undefined ? undefined : Number(size);
}

function unknownCodec(codec: number): IntegrityError {
  return new IntegrityError(`unknown codec id 0x${codec.toString(16)} in blob header`, {
    hint: 'the repository may have been written by a newer Ferry; upgrade Ferry',
  });
}

let shared: Zstd | undefined;
function sharedZstd(): Zstd {
  shared ??= new Zstd(DEFAULT_LEVEL);
  return shared;
}

/** Compresses a small document on this thread (returns a copy, safe to keep). */
export async function compress(plain: Buffer, level: number = DEFAULT_LEVEL): Promise<Compressed> {
  const z = level === DEFAULT_LEVEL ? sharedZstd() : new Zstd(level);
  const c = z.compressView(plain);
  return { codec: c.codec, data: c.codec === CODEC_NONE ? plain : Buffer.from(c.data) };
}

/** Decompresses a document of unknown size on this thread. */
export async function decompress(codec: number, data: Buffer): Promise<Buffer> {
  switch (codec) {
    case CODEC_NONE:
      return data;
    case CODEC_ZSTD: {
      const size = binding.getFrameContentSize(data);
      if (size === null || size === undefined || size > 1 << 30) throw new IntegrityError('zstd frame has no usable content size');
      const out = Buffer.allocUnsafe(Number(size));
      sharedZstd().decompressInto(codec, data, out, 'document');
      return out;
    }
    default:
      throw unknownCodec(codec);
  }
}
