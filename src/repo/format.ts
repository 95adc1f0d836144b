/**
 * Repository format v1: the object layout and the `config` object.
 * See docs/format.md for the byte-level description; keep the two in step.
 *
 *   config                       plain JSON (below), MAC'd with the master key
 *   keys/<slot id>               key slots (JSON): the master key wrapped per credential
 *   data/<xx>/<pack id>          packs
 *   index/<id>                   index files (sealed)
 *   snapshots/<id>               manifests (sealed)
 *   locks/<id>                   locks (plain JSON)
 *   runs/<time>-<id>             job run records (sealed)
 *   wal/<timeline>/<segment>     WAL segments and history files (sealed)
 */
import { createHmac } from 'node:crypto';
import { ConfigError, IntegrityError } from '../util/errors.ts';
import type { MasterKey } from '../codec/keys.ts';
import { ID_HASHES, isIdHash, type IdHash } from '../codec/hash.ts';

export const FORMAT_VERSION = 1;

export const DIRS = {
  keys: 'keys/',
  data: 'data/',
  index: 'index/',
  snapshots: 'snapshots/',
  locks: 'locks/',
  runs: 'runs/',
  wal: 'wal/',
} as const;

export interface RepoConfig {
  format: 'ferry-repository';
  version: number;
  id: string;
  created: string;
  chunker: { min: number; avg: number; max: number; seed: string };
  packSize: number;
  compressionLevel: number;
  /** The blob id function (codec/hash.ts); absent in repositories made before it existed: hmac-sha256. */
  idHash?: IdHash;
  mac?: string;
}

/**
 * What is wrong with a parsed config's shape, or undefined. Checked by hand rather than with
 * zod: every `wal push` (one process per WAL segment) opens the config, and loading zod alone
 * took longer than this whole check. The config's MAC (verifyConfig) guards its content.
 */
function configProblem(j: Record<string, unknown>): string | undefined {
  const int = (v: unknown) => typeof v === 'number' && Number.isInteger(v);
  const str = (v: unknown) => typeof v === 'string';
  const c = j.chunker as Record<string, unknown> | undefined;
  const checks: [string, boolean][] = [
    ['version', int(j.version)],
    ['id', str(j.id)],
    ['created', str(j.created)],
    ['chunker', !!c && typeof c === 'object' && int(c.min) && int(c.avg) && int(c.max) && str(c.seed)],
    ['packSize', int(j.packSize) && (j.packSize as number) > 0],
    ['compressionLevel', int(j.compressionLevel)],
    ['mac', j.mac === undefined || str(j.mac)],
  ];
  const bad = checks.find(([, ok]) => !ok);
  return bad ? `field ${bad[0]} is missing or of the wrong type` : undefined;
}

function macOf(cfg: RepoConfig, key: MasterKey): string {
  const { mac: _mac, ...rest } = cfg;
  return createHmac('sha256', key.mac).update(JSON.stringify(sortDeep(rest))).digest('hex');
}

function sortDeep(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortDeep);
  if (v && typeof v === 'object') {
    const o: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) o[k] = sortDeep((v as Record<string, unknown>)[k]);
    return o;
  }
  return v;
}

export function signConfig(cfg: RepoConfig, key: MasterKey): RepoConfig {
  return { ...cfg, mac: macOf(cfg, key) };
}

export function verifyConfig(cfg: RepoConfig, key: MasterKey, where: string): void {
  if (cfg.mac !== macOf(cfg, key)) {
    throw new IntegrityError(`the config of repository ${where} does not match its MAC (tampered or corrupted)`);
  }
}

/** Parses `config` and refuses versions this build does not understand. */
export function parseConfig(raw: Buffer, where: string): RepoConfig {
  let json: unknown;
  try {
    json = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new IntegrityError(`the config of repository ${where} is not valid JSON`);
  }
  const probe = json as { format?: unknown; version?: unknown };
  if (probe?.format !== 'ferry-repository') throw new ConfigError(`${where} is not a Ferry repository (its config has no Ferry format marker)`);
  if (typeof probe.version === 'number' && probe.version > FORMAT_VERSION) {
    throw new ConfigError(
      `repository ${where} uses format version ${probe.version}, newer than this Ferry understands (${FORMAT_VERSION})`,
      { hint: 'upgrade Ferry to open this repository' },
    );
  }
  const idHash = (json as { idHash?: unknown }).idHash;
  if (idHash !== undefined && !isIdHash(idHash)) {
    throw new ConfigError(`repository ${where} names its blobs with ${JSON.stringify(idHash)}, which this Ferry does not know (it knows ${ID_HASHES.join(', ')})`, {
      hint: 'upgrade Ferry to open this repository',
    });
  }
  const problem = configProblem(json as Record<string, unknown>);
  if (problem) throw new IntegrityError(`the config of repository ${where} is malformed: ${problem}`);
  return json as RepoConfig;
}
