/**
 * Settings resolution, in one place: flag > environment > ferry.yaml > default.
 * Secrets are read from the environment or from files named there or in the
 * config file, never from argv.
 */
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { readKeyFile, type Credential } from '../codec/keys.ts';
import { ConfigError } from '../util/errors.ts';
import type { FerryFile } from './schema.ts';

export interface Settings {
  /** Where the settings came from, for messages. */
  configPath?: string;
  file: FerryFile;
  repoUrl?: string;
  s3Endpoint?: string;
  passwordFile?: string;
  keyFile?: string;
  compressionLevel?: number;
}

export interface SettingSources {
  flags: { repo?: string; config?: string };
  env: NodeJS.ProcessEnv;
  cwd: string;
}

export async function loadConfigFile(path: string): Promise<FerryFile> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read config file ${path}: ${(e as Error).message}`);
  }
  let doc: unknown;
  // Loaded only when there is a file to read: most `wal push` calls have none.
  // Bundled, the CommonJS build of yaml is imported as { default: … }; under tsx it has named exports.
  const yaml = (await import('yaml')) as typeof import('yaml') & { default?: typeof import('yaml') };
  const parseYaml = yaml.parse ?? yaml.default!.parse;
  try {
    doc = parseYaml(text) ?? {};
  } catch (e) {
    throw new ConfigError(`config file ${path} is not valid YAML: ${(e as Error).message.split('\n')[0]}`);
  }
  // zod, like yaml, only when there is a file (see above).
  const { FileSchema } = await import('./schema.ts');
  const r = FileSchema.safeParse(doc);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new ConfigError(`config file ${path}: ${i.path.join('.') || '(top)'}: ${i.message}`);
  }
  return r.data;
}

export async function resolveSettings(src: SettingSources): Promise<Settings> {
  const explicit = src.flags.config ?? src.env.FERRY_CONFIG;
  let configPath: string | undefined;
  if (explicit) {
    configPath = resolve(src.cwd, explicit);
    if (!existsSync(configPath)) throw new ConfigError(`config file ${configPath} does not exist`);
  } else if (existsSync(resolve(src.cwd, 'ferry.yaml'))) {
    configPath = resolve(src.cwd, 'ferry.yaml');
  }
  const file = configPath ? await loadConfigFile(configPath) : {};
  const repo = file.repository;
  return {
    configPath,
    file,
    repoUrl: src.flags.repo ?? src.env.FERRY_REPO ?? repo?.url,
    s3Endpoint: src.env.FERRY_S3_ENDPOINT ?? repo?.s3_endpoint,
    passwordFile: src.env.FERRY_PASSWORD_FILE ?? repo?.password_file,
    keyFile: src.env.FERRY_KEY_FILE ?? repo?.key_file,
    compressionLevel: src.env.FERRY_COMPRESSION_LEVEL ? Number(src.env.FERRY_COMPRESSION_LEVEL) : repo?.compression_level,
  };
}

/** Credentials to try, cheapest first: a key file opens in microseconds, a passphrase costs scrypt. */
export function credentialsFrom(settings: Settings, env: NodeJS.ProcessEnv): Credential[] {
  const creds: Credential[] = [];
  if (settings.keyFile) creds.push(readKeyFile(settings.keyFile));
  if (env.FERRY_PASSWORD !== undefined && env.FERRY_PASSWORD !== '') creds.push({ kind: 'passphrase', passphrase: env.FERRY_PASSWORD });
  if (settings.passwordFile) creds.push({ kind: 'passphrase', passphrase: readSecretFile(settings.passwordFile, 'password file') });
  return creds;
}

export function readSecretFile(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8').replace(/\r?\n$/, '');
  } catch (e) {
    throw new ConfigError(`cannot read ${what} ${path}: ${(e as Error).message}`);
  }
}
