/**
 * WAL file names and where they live in the repository.
 *
 *   segment       000000010000000A000000FF            (timeline, log, seg: 8 hex each)
 *   partial       000000010000000A000000FF.partial    (end of a timeline, from promotion)
 *   history       00000002.history
 *   backup label  000000010000000A000000FF.00000028.backup
 *
 * Stored at `wal/<timeline>/<name>`, so `wal fetch` is one GET and listing one
 * timeline is one prefix.
 */
import { UsageError } from '../util/errors.ts';

export type WalKind = 'segment' | 'partial' | 'history' | 'backup';

export interface WalName {
  name: string;
  kind: WalKind;
  timeline: number;
  /** Segment number within the timeline (log * segmentsPerLog + seg), for segments and partials. */
  segno?: bigint;
}

const SEGMENT = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$/;
const PARTIAL = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})\.partial$/;
const HISTORY = /^([0-9A-F]{8})\.history$/;
const BACKUP = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})\.[0-9A-F]{8}\.backup$/;

/** Segments per "log" (xlogid) for a segment size: 0x100000000 / size. */
export function segmentsPerLog(segmentSize: number): bigint {
  return 0x100000000n / BigInt(segmentSize);
}

export function parseWalName(name: string, segmentSize = 16 * 1024 * 1024): WalName {
  let m = SEGMENT.exec(name) ?? PARTIAL.exec(name) ?? BACKUP.exec(name);
  if (m) {
    const kind: WalKind = name.endsWith('.partial') ? 'partial' : name.endsWith('.backup') ? 'backup' : 'segment';
    const segno = BigInt('0x' + m[2]) * segmentsPerLog(segmentSize) + BigInt('0x' + m[3]);
    return { name, kind, timeline: parseInt(m[1], 16), segno };
  }
  m = HISTORY.exec(name);
  if (m) return { name, kind: 'history', timeline: parseInt(m[1], 16) };
  throw new UsageError(`"${name}" is not a WAL file name`, { hint: 'expected e.g. 000000010000000000000001, 00000002.history or a .partial / .backup name' });
}

export function walKey(name: string): string {
  const w = parseWalName(name);
  return `wal/${w.timeline.toString(16).toUpperCase().padStart(8, '0')}/${name}`;
}

export function segmentName(timeline: number, segno: bigint, segmentSize = 16 * 1024 * 1024): string {
  const per = segmentsPerLog(segmentSize);
  const hex = (n: bigint | number) => n.toString(16).toUpperCase().padStart(8, '0');
  return hex(timeline) + hex(segno / per) + hex(segno % per);
}

/** Parses an LSN `X/Y` into a bigint. */
export function parseLsn(lsn: string): bigint {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(lsn.trim());
  if (!m) throw new UsageError(`"${lsn}" is not an LSN`, { hint: 'an LSN looks like 0/3000060' });
  return (BigInt('0x' + m[1]) << 32n) | BigInt('0x' + m[2]);
}

export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

/** The segment number holding an LSN. */
export function lsnSegno(lsn: bigint, segmentSize = 16 * 1024 * 1024): bigint {
  return lsn / BigInt(segmentSize);
}
