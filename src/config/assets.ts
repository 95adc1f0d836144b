/**
 * Assets in ferry.yaml: what Ferry protects, by name.
 *
 *   assets:
 *     - { name: resumes, type: s3, bucket: resumes, prefix: uploads/, endpoint: http://minio:9000 }
 *     - { name: uploads, type: directory, path: /srv/app/uploads }
 *     - { name: app-env, type: secrets, file: /etc/app/env }        # or dir: DIR, or command: "vault kv get -format=json app"
 *     - { name: app-config, type: git, repo: /srv/git/app-config.git }
 *     - { name: cache, type: none, reason: "Redis: cache only, rebuilt from PostgreSQL" }
 *     - { name: main-db, type: postgres }
 *
 * S3 credentials come from the AWS SDK's usual environment, never from this file.
 */
import { z } from 'zod';
import { ConfigError } from '../util/errors.ts';
import type { Settings } from './load.ts';

const name = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'names are 1-64 letters, digits, dot, dash or underscore, starting with a letter or digit');

export const S3AssetSchema = z
  .object({
    name,
    type: z.literal('s3'),
    bucket: z.string().min(1),
    prefix: z.string().default(''),
    endpoint: z.string().url().optional(),
    region: z.string().optional(),
    /** `ferry objects configure`: replicate to this bucket (name or ARN), with this IAM role. */
    replicate_to: z.string().min(1).optional(),
    replication_role: z.string().min(1).optional(),
    /** `ferry objects configure`: days before noncurrent versions expire (default 90). */
    noncurrent_days: z.number().int().positive().optional(),
  })
  .strict();

export const DirectoryAssetSchema = z.object({ name, type: z.literal('directory'), path: z.string().min(1) }).strict();

export const SecretsAssetSchema = z
  .object({
    name,
    type: z.literal('secrets'),
    /** Exactly one source: a file (e.g. an env file), a directory, or a command whose stdout is the secret. */
    file: z.string().min(1).optional(),
    dir: z.string().min(1).optional(),
    command: z.string().min(1).optional(),
    /** Days of versions kept (default 90). */
    keep_days: z.number().int().positive().default(90),
  })
  .strict()
  .refine((a) => [a.file, a.dir, a.command].filter((x) => x !== undefined).length === 1, { message: 'a secrets asset needs exactly one of file, dir or command' });

export const GitAssetSchema = z.object({ name, type: z.literal('git'), repo: z.string().min(1) }).strict();

export const NoneAssetSchema = z.object({ name, type: z.literal('none'), reason: z.string().min(1, 'say why this asset is not protected') }).strict();

export const PostgresAssetSchema = z.object({ name, type: z.literal('postgres') }).passthrough();

export const AssetSchema = z.union([S3AssetSchema, DirectoryAssetSchema, SecretsAssetSchema, GitAssetSchema, NoneAssetSchema, PostgresAssetSchema]);

export type S3Asset = z.infer<typeof S3AssetSchema>;
export type DirectoryAsset = z.infer<typeof DirectoryAssetSchema>;
export type SecretsAsset = z.infer<typeof SecretsAssetSchema>;
export type GitAsset = z.infer<typeof GitAssetSchema>;
export type NoneAsset = z.infer<typeof NoneAssetSchema>;
export type Asset = z.infer<typeof AssetSchema>;
export type AssetType = Asset['type'];

const TYPES = ['s3', 'directory', 'secrets', 'git', 'none', 'postgres'];

/** Every asset of the config file, validated (one clear error for the first bad one). */
export function assetsOf(settings: Settings): Asset[] {
  const where = settings.configPath ?? 'ferry.yaml';
  const out: Asset[] = [];
  const seen = new Set<string>();
  for (const [i, raw] of (settings.file.assets ?? []).entries()) {
    const type = raw.type;
    if (typeof type !== 'string' || !TYPES.includes(type)) {
      throw new ConfigError(`${where}: assets[${i}]${typeof raw.name === 'string' ? ` (${raw.name})` : ''}: type must be one of ${TYPES.join(', ')}, got ${JSON.stringify(type)}`);
    }
    const r = AssetSchema.safeParse(raw);
    if (!r.success) {
      // The union reports every branch; re-parse with the branch the type names for one clear message.
      const branch = { s3: S3AssetSchema, directory: DirectoryAssetSchema, secrets: SecretsAssetSchema, git: GitAssetSchema, none: NoneAssetSchema, postgres: PostgresAssetSchema }[type as AssetType];
      const issue = (branch.safeParse(raw).error ?? r.error).issues[0];
      throw new ConfigError(`${where}: assets[${i}]${typeof raw.name === 'string' ? ` (${raw.name})` : ''}: ${issue.path.join('.') || '(asset)'}: ${issue.message}`);
    }
    if (seen.has(r.data.name)) throw new ConfigError(`${where}: asset name "${r.data.name}" is used twice`);
    seen.add(r.data.name);
    out.push(r.data);
  }
  return out;
}

/** The asset called `assetName`, which must be of type `type`; a clear error otherwise. */
export function findAsset<T extends AssetType>(settings: Settings, assetName: string, type: T): Extract<Asset, { type: T }> {
  const all = assetsOf(settings);
  const a = all.find((x) => x.name === assetName);
  if (!a) {
    const same = all.filter((x) => x.type === type).map((x) => x.name);
    throw new ConfigError(`no asset named "${assetName}" in ${settings.configPath ?? 'ferry.yaml (none found)'}`, {
      hint: same.length ? `${type} assets: ${same.join(', ')}` : `add one under assets: with type: ${type} (see docs/assets.md)`,
    });
  }
  if (a.type !== type) throw new ConfigError(`asset "${assetName}" is of type ${a.type}, not ${type}`);
  return a as Extract<Asset, { type: T }>;
}
