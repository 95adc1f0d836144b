/**
 * What a PostgreSQL snapshot's manifest records in `meta` (manifest kind `postgres`).
 * Restore, verify, expire and drills read these fields; keep them stable.
 */
export interface TableFingerprint {
  database: string;
  schema: string;
  table: string;
  rows: number;
  /** Sum (as a decimal string) of a 64-bit hash of every row; order-independent. */
  checksum: string;
  /**
   * How each row was hashed: `record` = hash_record_extended(row, 0) (PostgreSQL 14+,
   * when every column type has an extended hash function), `text` =
   * hashtextextended(row::text, 0). Absent in older manifests: `text`.
   */
  method?: 'record' | 'text';
}

export interface PgSnapshotMeta {
  systemIdentifier: string;
  /** server_version_num, e.g. 150008 */
  serverVersion: number;
  timeline: number;
  walSegmentSize: number;
  startLsn: string;
  stopLsn: string;
  /** WAL segment names holding the start and stop LSN (on `timeline`). */
  startWal: string;
  stopWal: string;
  startTime: string;
  stopTime: string;
  backupLabel: string;
  tablespaceMap: string;
  tablespaces: { oid: number; name: string; location: string }[];
  dataChecksums: boolean;
  checksumFailures: { file: string; block: number }[];
  fingerprint?: { lsn: string; takenAt: string; tables: TableFingerprint[] };
  dataDirectory: string;
}
