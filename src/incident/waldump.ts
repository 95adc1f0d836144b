/**
 * Reading `pg_waldump` output: one line per WAL record, folded into the committed
 * transactions and what each did to which relation file. Pure (no I/O), so it is
 * tested on captured lines.
 *
 * What a line gives us (PostgreSQL 13–17 print the same shape):
 *
 *   rmgr: Heap len (rec/tot): 54/54, tx: 730, lsn: 0/0155DF30, prev 0/0155DF08,
 *     desc: DELETE off 1 flags 0x00 KEYS_UPDATED , blkref #0: rel 1663/5/16384 blk 0
 *
 * Relations appear only as `spc/db/relfilenode`; names are resolved later against
 * the live database (find.ts). What the tracker records per transaction:
 *
 * - rows: Heap DELETE (1 row), UPDATE / HOT_UPDATE (1 row), INSERT and Heap2
 *   MULTI_INSERT (n rows) on the main fork of the record's first block reference;
 * - Heap TRUNCATE (written at wal_level = logical): the truncated relation OIDs;
 * - Storage CREATE: relation files the transaction created (TRUNCATE, VACUUM FULL,
 *   CLUSTER and table rewrites give a table a new file; the old one is dropped at
 *   commit). Files that get no record after their creation are empty: a TRUNCATE;
 * - Storage TRUNCATE inside a transaction (VACUUM cutting empty pages off a table's
 *   end, or a TRUNCATE of a table created in the same transaction; find.ts does not
 *   report them);
 * - Standby LOCK: relation OIDs the transaction locked AccessExclusive (TRUNCATE
 *   and DROP do), with their database, so a truncated table can be named by OID;
 * - deletes from pg_class (relfilenode 1259): relations were dropped;
 * - the commit record: time, LSN, subtransactions (their rows roll into the
 *   top-level transaction) and the relation files dropped at commit.
 *
 * An ABORT record discards the transaction (or the aborted subtransactions);
 * transactions with no commit record in the scanned WAL are not reported.
 */

export interface RelFile {
  spc: number;
  db: number;
  node: number;
}

export interface WalRecord {
  rmgr: string;
  /** Total record length (header and data). */
  totLen: number;
  xid: number;
  /** LSN as 64-bit integer. */
  lsn: bigint;
  desc: string;
  /** Block references to the main fork: relation file and block. */
  blocks: (RelFile & { id: number; blk: number })[];
}

export interface RowCounts {
  deleted: number;
  updated: number;
  inserted: number;
}

export interface CommittedTx {
  xid: number;
  /** LSN of the commit record. */
  lsn: bigint;
  /** Commit time as ISO 8601 with microseconds, e.g. 2026-11-24T12:03:49.591350Z. */
  commitTime: string;
  /** Milliseconds since the epoch (for filtering). */
  commitMs: number;
  subxacts: number[];
  /** Rows per relation file, keyed by `relKey`. */
  rows: Map<string, RowCounts>;
  /** Relation files dropped at commit (old files of truncated/rewritten relations, dropped relations). */
  dropped: RelFile[];
  /** Relation files the transaction created. */
  created: RelFile[];
  /** Created files no later record of the transaction touched (e.g. a truncated table's new heap). */
  createdEmpty: RelFile[];
  /** Relation OIDs in Heap TRUNCATE records (wal_level = logical), with the database when known. */
  truncatedOids: { db: number; oid: number }[];
  /** Files truncated by a Storage TRUNCATE record inside this transaction. */
  smgrTruncated: RelFile[];
  /** Relation OIDs locked AccessExclusive (Standby LOCK records). */
  lockedOids: { db: number; oid: number }[];
  /** Rows deleted from pg_class: relations were dropped. */
  catalogDeletes: number;
  /** Rows the dropped files held, for files created within the scanned WAL (keyed by `relKey`). */
  droppedRows: Map<string, number>;
}

export function relKey(r: RelFile): string {
  return `${r.spc}/${r.db}/${r.node}`;
}

export function parseRelKey(k: string): RelFile {
  const [spc, db, node] = k.split('/').map(Number);
  return { spc, db, node };
}

/** Default and global tablespace OIDs: `base/` and `global/` in relation paths. */
const DEFAULTTABLESPACE = 1663;
const GLOBALTABLESPACE = 1664;
/** pg_class's relfilenode (a mapped catalog; 1259 unless pg_class was rewritten). */
export const PG_CLASS_NODE = 1259;

const LINE = /^rmgr: (\S+)\s+len \(rec\/tot\):\s*\d+\/\s*(\d+), tx:\s*(\d+), lsn: ([0-9A-Fa-f]+)\/([0-9A-Fa-f]+), prev [0-9A-Fa-f]+\/[0-9A-Fa-f]+, desc: (.*)$/;
const BLKREF = /blkref #(\d+): rel (\d+)\/(\d+)\/(\d+)(?: fork (\w+))? blk (\d+)/g;

/** Parses one pg_waldump line, or undefined for anything else (headers, `first record is after ...`). */
export function parseRecord(line: string): WalRecord | undefined {
  const m = LINE.exec(line);
  if (!m) return undefined;
  const blocks: WalRecord['blocks'] = [];
  for (const b of m[6].matchAll(BLKREF)) {
    if (b[5] !== undefined && b[5] !== 'main') continue;
    blocks.push({ id: Number(b[1]), spc: Number(b[2]), db: Number(b[3]), node: Number(b[4]), blk: Number(b[6]) });
  }
  return {
    rmgr: m[1],
    totLen: Number(m[2]),
    xid: Number(m[3]),
    lsn: (BigInt('0x' + m[4]) << 32n) | BigInt('0x' + m[5]),
    desc: m[6],
    blocks,
  };
}

/** A relation path as the Storage and Transaction descriptions print it: `base/5/16384`, `global/1262`, `pg_tblspc/16385/PG_15_.../5/16384`. */
export function parseRelPath(p: string): RelFile | undefined {
  let m = /^base\/(\d+)\/(\d+)$/.exec(p);
  if (m) return { spc: DEFAULTTABLESPACE, db: Number(m[1]), node: Number(m[2]) };
  m = /^global\/(\d+)$/.exec(p);
  if (m) return { spc: GLOBALTABLESPACE, db: 0, node: Number(m[1]) };
  m = /^pg_tblspc\/(\d+)\/[^/]+\/(\d+)\/(\d+)$/.exec(p);
  if (m) return { spc: Number(m[1]), db: Number(m[2]), node: Number(m[3]) };
  return undefined;
}

/** `2026-11-24 12:03:49.591350 UTC` (pg_waldump run with TZ=UTC) as ISO 8601. */
export function parseWaldumpTime(date: string, time: string, zone: string): string | undefined {
  if (zone !== 'UTC' && zone !== 'GMT' && zone !== 'Z') return undefined;
  if (!/^\d{4}-\d\d-\d\d$/.test(date) || !/^\d\d:\d\d:\d\d(\.\d+)?$/.test(time)) return undefined;
  return `${date}T${time}Z`;
}

export interface XactDesc {
  kind: 'commit' | 'abort';
  /** For COMMIT_PREPARED / ABORT_PREPARED: the prepared transaction's xid. */
  preparedXid?: number;
  time: string;
  subxacts: number[];
  rels: RelFile[];
}

/** Parses a Transaction rmgr description of a COMMIT / ABORT (plain or prepared). */
export function parseXactDesc(desc: string): XactDesc | undefined {
  const m = /^(COMMIT|ABORT)(_PREPARED)? (?:(\d+): )?(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d(?:\.\d+)?) (\S+?)(;.*)?$/.exec(desc.trim());
  if (!m) return undefined;
  const time = parseWaldumpTime(m[4], m[5], m[6]);
  if (!time) return undefined;
  const out: XactDesc = { kind: m[1] === 'COMMIT' ? 'commit' : 'abort', time, subxacts: [], rels: [] };
  if (m[2] && m[3]) out.preparedXid = Number(m[3]);
  for (const part of (m[7] ?? '').split(';')) {
    const p = part.trim();
    if (p.startsWith('subxacts:')) out.subxacts = p.slice(9).trim().split(/\s+/).filter(Boolean).map(Number);
    else if (p.startsWith('rels:')) {
      for (const path of p.slice(5).trim().split(/\s+/)) {
        const r = parseRelPath(path);
        if (r) out.rels.push(r);
      }
    }
  }
  return out;
}

interface OpenTx {
  rows: Map<string, RowCounts>;
  created: Map<string, RelFile>;
  touchedAfterCreate: Set<string>;
  /** Created files written by page images (a rewrite copies rows without heap records). */
  imaged: Set<string>;
  truncatedOids: { db: number; oid: number }[];
  smgrTruncated: RelFile[];
  lockedOids: { db: number; oid: number }[];
  catalogDeletes: number;
  dbs: Set<number>;
}

function openTx(): OpenTx {
  return { rows: new Map(), created: new Map(), touchedAfterCreate: new Set(), imaged: new Set(), truncatedOids: [], smgrTruncated: [], lockedOids: [], catalogDeletes: 0, dbs: new Set() };
}

/** The LSN of a pg_waldump line, read without the full parse. */
function lsnOf(line: string): bigint | undefined {
  const at = line.indexOf(', lsn: ');
  if (at < 0) return undefined;
  const slash = line.indexOf('/', at + 7);
  const comma = line.indexOf(',', slash);
  if (slash < 0 || comma < 0) return undefined;
  const hi = line.slice(at + 7, slash);
  const lo = line.slice(slash + 1, comma);
  if (!/^[0-9A-Fa-f]{1,8}$/.test(hi) || !/^[0-9A-Fa-f]{1,8}$/.test(lo)) return undefined;
  return (BigInt(parseInt(hi, 16)) << 32n) | BigInt(parseInt(lo, 16));
}

const INDEX_RMGRS = new Set(['Btree', 'Hash', 'Gin', 'Gist', 'SPGist', 'BRIN']);
/** Resource managers whose records the tracker reads in full. */
const TRACKED_RMGRS = new Set(['Heap', 'Heap2', 'Storage', 'Standby', 'Transaction']);

/**
 * Folds records into committed transactions. Feed records in LSN order; records at
 * or before the last fed LSN are ignored (batches of one scan may overlap).
 */
export class WalTracker {
  private open = new Map<number, OpenTx>();
  /** Files created by transactions still open, to see whether later records fill them. */
  private createdOpen = new Map<string, OpenTx>();
  /** Rows in files created by committed transactions of the scan (inserted minus deleted). */
  private born = new Map<string, number>();
  private last = -1n;
  /** Relation files seen with index records (never reported as dropped tables). */
  readonly indexNodes = new Set<string>();
  /** Relation files seen with heap records. */
  readonly heapNodes = new Set<string>();
  readonly committed: CommittedTx[] = [];
  /** Commit time (ms) of the newest commit seen. */
  lastCommitMs?: number;
  records = 0;
  /** Commit records seen (kept or not). */
  commits = 0;

  /**
   * @param minRows keep only committed transactions that deleted or updated at least
   *   this many rows of one relation file, or dropped or truncated relations (memory
   *   stays bounded on a busy day of WAL); 0 keeps every transaction that changed rows.
   */
  constructor(private readonly minRows = 0) {}

  get lastLsn(): bigint {
    return this.last;
  }

  /**
   * Feeds one pg_waldump line. Records of resource managers that say nothing about
   * rows or files (XLOG, index AMs, sequences, ...) are only noted by LSN (and index
   * files by their first block reference) without a full parse: most of a busy
   * cluster's WAL is index records and full-page images.
   */
  feedLine(line: string): WalRecord | undefined {
    if (!line.startsWith('rmgr: ')) return undefined;
    const rmgr = line.slice(6, line.indexOf(' ', 6));
    if (rmgr === 'Heap' && this.heapLine(line)) return undefined;
    if (TRACKED_RMGRS.has(rmgr)) {
      const r = parseRecord(line);
      if (r) this.feed(r);
      return r;
    }
    const lsn = lsnOf(line);
    if (lsn === undefined || lsn <= this.last) return undefined;
    this.last = lsn;
    this.records++;
    if (INDEX_RMGRS.has(rmgr)) {
      const b = /blkref #0: rel (\d+\/\d+\/\d+)/.exec(line);
      if (b) this.indexNodes.add(b[1]);
    }
    if (this.createdOpen.size > 0) {
      // A rewrite fills its new files with full-page images (XLOG FPI): they are not empty.
      for (const b of line.matchAll(/blkref #\d+: rel (\d+\/\d+\/\d+)/g)) {
        const t = this.createdOpen.get(b[1]);
        t?.touchedAfterCreate.add(b[1]);
        t?.imaged.add(b[1]);
      }
    }
    return undefined;
  }

  /**
   * The hot path: Heap DELETE / UPDATE / HOT_UPDATE / INSERT (and LOCK, INPLACE,
   * CONFIRM, which count nothing) read with indexOf instead of the full parse: a
   * busy day of WAL is millions of them. False for records it leaves to `feed`.
   */
  private heapLine(line: string): boolean {
    const d = line.indexOf(', desc: ');
    if (d < 0) return false;
    let opEnd = line.indexOf(' ', d + 8);
    if (opEnd < 0) opEnd = line.length;
    let op = line.slice(d + 8, opEnd);
    if (op.endsWith('+INIT')) op = op.slice(0, -5);
    if (op === 'TRUNCATE') return false;
    const field: keyof RowCounts | undefined = op === 'DELETE' ? 'deleted' : op === 'UPDATE' || op === 'HOT_UPDATE' ? 'updated' : op === 'INSERT' ? 'inserted' : undefined;
    const lsn = lsnOf(line);
    if (lsn === undefined) return false;
    if (lsn <= this.last) return true;
    this.last = lsn;
    this.records++;
    if (!field) return true;
    const b = line.indexOf('blkref #0: rel ', opEnd);
    if (b < 0) return true;
    let e = line.indexOf(' ', b + 15);
    if (e < 0) e = line.length;
    const key = line.slice(b + 15, e);
    const xid = parseInt(line.slice(line.indexOf(', tx:') + 5), 10);
    if (!xid) return true;
    this.heapNodes.add(key);
    const tx = this.tx(xid);
    if (tx.created.has(key)) tx.touchedAfterCreate.add(key);
    let c = tx.rows.get(key);
    if (!c) tx.rows.set(key, (c = { deleted: 0, updated: 0, inserted: 0 }));
    c[field]++;
    if (field === 'deleted' && key.endsWith(`/${PG_CLASS_NODE}`) && key.split('/')[2] === String(PG_CLASS_NODE)) tx.catalogDeletes++;
    return true;
  }

  feed(r: WalRecord): void {
    if (r.lsn <= this.last) return;
    this.last = r.lsn;
    this.records++;
    if (INDEX_RMGRS.has(r.rmgr)) for (const b of r.blocks) this.indexNodes.add(relKey(b));
    if (r.rmgr === 'Transaction') {
      this.xact(r);
      return;
    }
    if (r.xid === 0) return;
    const tx = this.tx(r.xid);
    const op = r.desc.split(/[ ,]/, 1)[0].replace(/\+INIT$/, '');
    for (const b of r.blocks) {
      const k = relKey(b);
      tx.dbs.add(b.db);
      if (tx.created.has(k)) tx.touchedAfterCreate.add(k);
    }
    const first = r.blocks.find((b) => b.id === 0) ?? r.blocks[0];
    if (r.rmgr === 'Heap' || r.rmgr === 'Heap2') {
      if (first) this.heapNodes.add(relKey(first));
      if (r.rmgr === 'Heap' && op === 'TRUNCATE') {
        const m = /relids ([\d ]+)$/.exec(r.desc.trim());
        const db = tx.dbs.size === 1 ? [...tx.dbs][0] : 0;
        for (const oid of (m?.[1] ?? '').trim().split(/\s+/).filter(Boolean)) tx.truncatedOids.push({ db, oid: Number(oid) });
        return;
      }
      if (!first) return;
      const count = (field: keyof RowCounts, n: number) => {
        const k = relKey(first);
        let c = tx.rows.get(k);
        if (!c) tx.rows.set(k, (c = { deleted: 0, updated: 0, inserted: 0 }));
        c[field] += n;
      };
      if (r.rmgr === 'Heap') {
        if (op === 'DELETE') {
          count('deleted', 1);
          if (first.node === PG_CLASS_NODE) tx.catalogDeletes++;
        } else if (op === 'UPDATE' || op === 'HOT_UPDATE') count('updated', 1);
        else if (op === 'INSERT') count('inserted', 1);
      } else if (op === 'MULTI_INSERT') {
        const n = /^MULTI_INSERT(?:\+INIT)? (\d+) tuples/.exec(r.desc);
        count('inserted', n ? Number(n[1]) : 1);
      }
      return;
    }
    if (r.rmgr === 'Storage') {
      const m = /^(CREATE|TRUNCATE) (\S+)/.exec(r.desc.trim());
      const rel = m ? parseRelPath(m[2]) : undefined;
      if (!m || !rel) return;
      tx.dbs.add(rel.db);
      if (m[1] === 'CREATE') {
        tx.created.set(relKey(rel), rel);
        this.createdOpen.set(relKey(rel), tx);
      }
      else tx.smgrTruncated.push(rel);
      return;
    }
    if (r.rmgr === 'Standby') {
      for (const l of r.desc.matchAll(/xid (\d+) db (\d+) rel (\d+)/g)) {
        const owner = Number(l[1]) === r.xid ? tx : this.tx(Number(l[1]));
        owner.lockedOids.push({ db: Number(l[2]), oid: Number(l[3]) });
      }
    }
  }

  private tx(xid: number): OpenTx {
    let t = this.open.get(xid);
    if (!t) this.open.set(xid, (t = openTx()));
    return t;
  }

  private xact(r: WalRecord): void {
    const d = parseXactDesc(r.desc);
    if (!d) return;
    const xid = d.preparedXid ?? r.xid;
    const all = [xid, ...d.subxacts];
    for (const x of all) for (const k of this.open.get(x)?.created.keys() ?? []) this.createdOpen.delete(k);
    if (d.kind === 'abort') {
      for (const x of all) this.open.delete(x);
      return;
    }
    const merged = openTx();
    for (const x of all) {
      const t = this.open.get(x);
      if (!t) continue;
      this.open.delete(x);
      for (const [k, c] of t.rows) {
        const m = merged.rows.get(k) ?? { deleted: 0, updated: 0, inserted: 0 };
        m.deleted += c.deleted;
        m.updated += c.updated;
        m.inserted += c.inserted;
        merged.rows.set(k, m);
      }
      for (const [k, v] of t.created) merged.created.set(k, v);
      for (const k of t.touchedAfterCreate) merged.touchedAfterCreate.add(k);
      for (const k of t.imaged) merged.imaged.add(k);
      merged.truncatedOids.push(...t.truncatedOids);
      merged.smgrTruncated.push(...t.smgrTruncated);
      merged.lockedOids.push(...t.lockedOids);
      merged.catalogDeletes += t.catalogDeletes;
    }
    const ms = Date.parse(d.time);
    this.lastCommitMs = ms;
    this.commits++;
    // Files whose whole life is in the scan: how many rows they hold, so a TRUNCATE or
    // DROP of them has an exact row count. Not files a rewrite filled with page images.
    for (const k of merged.created.keys()) if (!merged.imaged.has(k)) this.born.set(k, 0);
    for (const [k, c] of merged.rows) {
      const n = this.born.get(k);
      if (n !== undefined) this.born.set(k, n + c.inserted - c.deleted);
    }
    const droppedRows = new Map<string, number>();
    for (const f of d.rels) {
      const n = this.born.get(relKey(f));
      if (n === undefined) continue;
      droppedRows.set(relKey(f), Math.max(0, n));
      this.born.delete(relKey(f));
    }
    // Transactions that changed nothing we track (read-only, sequences, DDL without drops) are noise.
    if (merged.rows.size === 0 && d.rels.length === 0 && merged.truncatedOids.length === 0 && merged.smgrTruncated.length === 0) return;
    if (d.rels.length === 0 && merged.truncatedOids.length === 0 && merged.smgrTruncated.length === 0 && ![...merged.rows.values()].some((c) => c.deleted >= this.minRows || c.updated >= this.minRows)) return;
    const created = [...merged.created.values()];
    this.committed.push({
      xid,
      lsn: r.lsn,
      commitTime: d.time,
      commitMs: ms,
      subxacts: d.subxacts,
      rows: merged.rows,
      dropped: d.rels,
      created,
      createdEmpty: created.filter((c) => !merged.touchedAfterCreate.has(relKey(c))),
      truncatedOids: merged.truncatedOids,
      smgrTruncated: merged.smgrTruncated,
      lockedOids: merged.lockedOids,
      catalogDeletes: merged.catalogDeletes,
      droppedRows,
    });
  }
}
