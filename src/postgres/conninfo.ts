/**
 * Connection strings, read once for every caller: `postgresql://…` URLs and libpq
 * `key=value …` strings (values optionally in single quotes; `\'` and `\\` escape,
 * in quoted and unquoted values alike, as libpq reads them), optionally a bare
 * database name as PostgreSQL's programs read `--dbname`.
 *
 * What a string becomes: libpq environment variables, so PostgreSQL's programs get
 * the connection without a password on their command line (conninfoEnv), and
 * node-postgres settings for the same server (clientConfigFromEnv). Passwords
 * belong in PGPASSWORD or ~/.pgpass; one given anyway is never shown (redact()).
 */
import type PgTypes from 'pg';
import pg from './pglib.ts';
import { PostgresError, UsageError } from '../util/errors.ts';

/** libpq parameter -> environment variable (the ones libpq documents). */
const ENV_OF: Record<string, string> = {
  host: 'PGHOST',
  hostaddr: 'PGHOSTADDR',
  port: 'PGPORT',
  dbname: 'PGDATABASE',
  user: 'PGUSER',
  password: 'PGPASSWORD',
  passfile: 'PGPASSFILE',
  service: 'PGSERVICE',
  options: 'PGOPTIONS',
  application_name: 'PGAPPNAME',
  connect_timeout: 'PGCONNECT_TIMEOUT',
  sslmode: 'PGSSLMODE',
  sslcert: 'PGSSLCERT',
  sslkey: 'PGSSLKEY',
  sslrootcert: 'PGSSLROOTCERT',
  sslcrl: 'PGSSLCRL',
  gssencmode: 'PGGSSENCMODE',
  target_session_attrs: 'PGTARGETSESSIONATTRS',
  channel_binding: 'PGCHANNELBINDING',
};

/** The parameters clientConfigFromEnv carries to node-postgres: where node-postgres alone connects, only these mean anything. */
const CLIENT_KEYS = ['host', 'hostaddr', 'port', 'dbname', 'user', 'password', 'sslmode', 'application_name', 'connect_timeout'];

export interface ConninfoRules {
  /** A text with no `=` that is not a URL is a database name (as `psql NAME` and pg_restore --dbname read it). */
  bareDbname?: boolean;
  /**
   * The connection is made by node-postgres alone, not by a libpq program: refuse the
   * parameters it cannot honour (options, service, sslcert, …) and host lists, rather than ignore them.
   */
  nodePostgres?: boolean;
}

const FORMS = 'write key=value pairs separated by spaces (host=/run/postgresql port=5432 dbname=app user=me) or a postgresql://USER@HOST:PORT/DB URL';

/** Parses a connection string into libpq parameters (`dbname`, `host`, …); a UsageError for anything it does not understand. */
export function parseConninfo(s: string, rules: ConninfoRules = {}): Record<string, string> {
  const text = s.trim();
  if (text === '') throw new UsageError('the connection string is empty', { hint: rules.bareDbname ? `give a database name, or ${FORMS}` : FORMS });
  const known = rules.nodePostgres ? CLIENT_KEYS : Object.keys(ENV_OF);
  const params: Record<string, string> = {};
  const set = (k: string, v: string) => {
    const key = k === 'database' ? 'dbname' : k;
    if (!known.includes(key)) {
      throw new UsageError(key in ENV_OF ? `unsupported connection keyword "${k}" in the connection string (node-postgres cannot honour it)` : `unknown connection keyword "${k}" in the connection string`, {
        hint: `use ${known.join(', ')}`,
      });
    }
    if (rules.nodePostgres && (key === 'host' || key === 'hostaddr' || key === 'port') && v.includes(',')) {
      throw new UsageError(`the connection string names several hosts or ports ("${v}"); give one`);
    }
    params[key] = v;
  };
  if (/^postgres(ql)?:\/\//i.test(text)) {
    // Parsed by hand: libpq's URLs allow what WHATWG URLs do not (an empty host after `user@`, host lists).
    const url = /^postgres(?:ql)?:\/\/([^/?]*)(?:\/([^?]*))?(?:\?(.*))?$/is.exec(text);
    if (!url) throw new UsageError('the connection string is not a valid postgresql:// URL', { hint: FORMS });
    const dec = (v: string, what: string) => {
      try {
        return decodeURIComponent(v);
      } catch {
        throw new UsageError(`the connection string has a badly escaped ${what}`);
      }
    };
    let authority = url[1];
    const at = authority.lastIndexOf('@');
    if (at >= 0) {
      const userinfo = authority.slice(0, at);
      authority = authority.slice(at + 1);
      const colon = userinfo.indexOf(':');
      const user = colon >= 0 ? userinfo.slice(0, colon) : userinfo;
      if (user) set('user', dec(user, 'user name'));
      if (colon >= 0) set('password', dec(userinfo.slice(colon + 1), 'password'));
    }
    if (authority) {
      const hosts: string[] = [];
      const ports: string[] = [];
      for (const h of authority.split(',')) {
        const m = /^\[([^\]]*)\](?::(\d*))?$/.exec(h) ?? /^([^:]*)(?::(\d*))?$/.exec(h);
        if (!m) throw new UsageError(`the connection string has a bad host "${h}"`);
        hosts.push(dec(m[1], 'host'));
        ports.push(m[2] ?? '');
      }
      if (hosts.some(Boolean)) set('host', hosts.join(','));
      if (ports.some(Boolean)) set('port', ports.join(','));
    }
    if (url[2]) set('dbname', dec(url[2], 'database name'));
    for (const kv of (url[3] ?? '').split('&')) {
      if (!kv) continue;
      const eq = kv.indexOf('=');
      if (eq <= 0) throw new UsageError(`the connection string has a bad parameter "${kv}"`);
      set(dec(kv.slice(0, eq), 'parameter'), dec(kv.slice(eq + 1), 'parameter'));
    }
    return params;
  }
  if (rules.bareDbname && !text.includes('=')) return { dbname: text };
  let i = 0;
  const skipSpace = () => {
    while (i < text.length && /\s/.test(text[i])) i++;
  };
  while (true) {
    skipSpace();
    if (i >= text.length) break;
    const k0 = i;
    while (i < text.length && text[i] !== '=' && !/\s/.test(text[i])) i++;
    const key = text.slice(k0, i);
    skipSpace();
    if (key === '') throw new UsageError(`the connection string is malformed at position ${k0 + 1} (a "=" without a keyword)`, { hint: FORMS });
    if (text[i] !== '=') throw new UsageError(`"${key}" in the connection string has no value`, { hint: FORMS });
    i++;
    skipSpace();
    let value = '';
    if (text[i] === "'") {
      i++;
      for (;;) {
        if (i >= text.length) throw new UsageError(`the quoted value of "${key}" in the connection string is not closed`, { hint: "close it with ' (write \\' for a quote inside)" });
        const c = text[i++];
        if (c === '\\' && i < text.length) value += text[i++];
        else if (c === "'") break;
        else value += c;
      }
    } else {
      while (i < text.length && !/\s/.test(text[i])) {
        const c = text[i++];
        if (c === '\\' && i < text.length) value += text[i++];
        else value += c;
      }
    }
    set(key, value);
  }
  return params;
}

/**
 * The environment for a PostgreSQL program connecting with `params`: `base` with the
 * variables for `params` set over it (what the string leaves out comes from the
 * libpq environment, as with psql).
 */
export function conninfoEnv(params: Record<string, string>, base: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...base };
  for (const [k, v] of Object.entries(params)) env[ENV_OF[k]] = v;
  return env;
}

/** node-postgres settings for the server a libpq environment names (hostaddr, when set, is where it connects). */
export function clientConfigFromEnv(env: NodeJS.ProcessEnv): PgTypes.ClientConfig {
  const mode = env.PGSSLMODE;
  const timeout = Number(env.PGCONNECT_TIMEOUT);
  return {
    host: env.PGHOSTADDR || env.PGHOST,
    port: env.PGPORT ? Number(env.PGPORT) : undefined,
    user: env.PGUSER,
    password: env.PGPASSWORD,
    database: env.PGDATABASE,
    ...(env.PGAPPNAME ? { application_name: env.PGAPPNAME } : {}),
    ...(timeout > 0 ? { connectionTimeoutMillis: timeout * 1000 } : {}),
    ...(mode === 'require' ? { ssl: { rejectUnauthorized: false } } : mode === 'verify-ca' || mode === 'verify-full' ? { ssl: { rejectUnauthorized: true } } : {}),
  };
}

/**
 * node-postgres connected to the server `conninfo` names (only what node-postgres
 * honours), what it leaves out taken from `env` as libpq would; without `conninfo`,
 * the libpq environment alone. A failure is a PostgresError naming `what` and where,
 * with any password replaced by ***.
 */
export function connectConninfo(conninfo: string | undefined, env: NodeJS.ProcessEnv, what: string, hint: string): Promise<PgTypes.Client> {
  const e = conninfo === undefined ? env : conninfoEnv(parseConninfo(conninfo, { nodePostgres: true }), env);
  const where = conninfo !== undefined ? redact(conninfo) : `${e.PGHOST ?? 'localhost'}:${e.PGPORT ?? '5432'}`;
  return connectClient(clientConfigFromEnv(e), `${what} at ${where}`, hint);
}

/**
 * A connected node-postgres client for `cfg`. A failure is a PostgresError
 * "cannot connect to WHAT: reason" (any password in it replaced by ***) with `hint`.
 */
export async function connectClient(cfg: PgTypes.ClientConfig, what: string, hint: string): Promise<PgTypes.Client> {
  const client = new pg.Client(cfg);
  try {
    await client.connect();
  } catch (e) {
    throw new PostgresError(`cannot connect to ${what}: ${redact((e as Error).message)}`, { hint });
  }
  client.on('error', () => undefined); // reported by the query that fails
  return client;
}

/** A libpq `key=value` string for one value, quoted so any database name passes through as a name. */
export function quoteConninfoValue(v: string): string {
  return `'${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/** The text with any password in a URL or keyword/value conninfo replaced by ***. */
export function redact(text: string): string {
  return text.replace(/(postgres(?:ql)?:\/\/[^:/?#@\s]*:)[^@\s]*@/g, '$1***@').replace(/(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)/g, '$1***');
}
