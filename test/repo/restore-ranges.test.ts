import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { groupRanges, type Piece } from '../../src/repo/restore.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

/** A piece of a file: `len` stored bytes at `offset` of pack `pack`, written at `fileOffset`. */
function piece(id: string, pack: string, offset: number, len: number, fileOffset: number): Piece {
  return { id, loc: { packId: pack, type: 'data', offset, length: len, rawLength: 8 * KiB }, fileOffset };
}

const ranges = (pieces: Piece[]) => groupRanges(pieces).map((g) => ({ pack: g.packId, start: g.start, end: g.end, ids: g.pieces.map((p) => p.id) }));

describe('restore range grouping', () => {
  it('reads a file whose chunks lie out of file order in a pack with one range', () => {
    // Two codec workers sealed the file's second batch before its first.
    const pieces = [piece('a', 'P', 200, 100, 0), piece('b', 'P', 300, 100, 8 * KiB), piece('c', 'P', 0, 100, 16 * KiB), piece('d', 'P', 100, 100, 24 * KiB)];
    assert.deepEqual(ranges(pieces), [{ pack: 'P', start: 0, end: 400, ids: ['c', 'd', 'a', 'b'] }]);
  });

  it('reads past a small gap (other files’ blobs) but not a large one', () => {
    const pieces = [piece('a', 'P', 0, 100, 0), piece('b', 'P', 100 + 200 * KiB, 100, 8 * KiB), piece('c', 'P', 100 + 200 * KiB + 100 + 2 * MiB, 100, 16 * KiB)];
    assert.deepEqual(ranges(pieces), [
      { pack: 'P', start: 0, end: 200 * KiB + 200, ids: ['a', 'b'] },
      { pack: 'P', start: 200 * KiB + 200 + 2 * MiB, end: 200 * KiB + 300 + 2 * MiB, ids: ['c'] },
    ]);
  });

  it('covers a blob the file holds twice once, and keeps each of its file offsets', () => {
    const pieces = [piece('z', 'P', 0, 50, 0), piece('a', 'P', 50, 100, 8 * KiB), piece('z', 'P', 0, 50, 16 * KiB)];
    const g = groupRanges(pieces);
    assert.equal(g.length, 1);
    assert.deepEqual([g[0].start, g[0].end], [0, 150]);
    assert.deepEqual(g[0].pieces.map((p) => [p.id, p.fileOffset]), [['z', 0], ['z', 16 * KiB], ['a', 8 * KiB]]);
  });

  it('keeps packs in the order the file first uses them, one range per pack at least', () => {
    const pieces = [piece('a', 'Q', 0, 100, 0), piece('b', 'P', 0, 100, 8 * KiB), piece('c', 'Q', 100, 100, 16 * KiB)];
    assert.deepEqual(ranges(pieces), [
      { pack: 'Q', start: 0, end: 200, ids: ['a', 'c'] },
      { pack: 'P', start: 0, end: 100, ids: ['b'] },
    ]);
  });

  it('ends a range at 16 MiB', () => {
    const pieces = Array.from({ length: 40 }, (_, i) => piece(`p${i}`, 'P', i * MiB, MiB, i * 8 * KiB));
    const g = groupRanges(pieces);
    assert.deepEqual(g.map((x) => x.pieces.length), [16, 16, 8]);
    assert.ok(g.every((x) => x.end - x.start <= 16 * MiB));
    assert.deepEqual(g.flatMap((x) => x.pieces.map((p) => p.id)), pieces.map((p) => p.id));
  });
});
