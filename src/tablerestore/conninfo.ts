/**
 * `--into CONNINFO` as libpq users write it: a URL (postgresql://...) or keyword/value
 * pairs (`host=/run/postgresql port=5432 dbname=app`, values optionally in single
 * quotes with \' and \\ escapes). node-postgres reads only URLs, so pairs are mapped to its settings.
 * Passwords belong in PGPASSWORD or ~/.pgpass, not on the command line; one given
 * anyway never appears in messages (redact()).
 */
import pg from 'pg';
import { PostgresError, UsageError } from '../util/errors.ts';

const KEYS: Record<string, string> = { host: 'host', hostaddr: 'host', port: 'port', dbname: 'database', user: 'user', password: 'password', sslmode: 'sslmode', application_name: 'application_name', connect_timeout: 'connect_timeout' };

/** Parses keyword/value conninfo; throws a UsageError on syntax errors or unknown keywords. */
export function parseKeywordConninfo(s: string): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  const ws = () => {
    while (i < s.length && /\s/.test(s[i])) i++;
  };
  for (ws(); i < s.length; ws()) {
    const k = /^[A-Za-z_]+/.exec(s.slice(i))?.[0];
    if (!k) throw new UsageError(`--into: cannot read the connection string at position ${i + 1}`, { hint: 'write key=value pairs (host=... port=... dbname=... user=...) or a postgresql:// URL' });
    i += k.length;
    ws();
    if (s[i] !== '=') throw new UsageError(`--into: "${k}" has no value`, { hint: 'write key=value pairs, e.g. host=/run/postgresql dbname=app' });
    i++;
    ws();
    let v = '';
    if (s[i] === "'") {
      i++;
      for (;;) {
        if (i >= s.length) throw new UsageError('--into: a quoted value is not closed');
        if (s[i] === '\\' && i + 1 < s.length) v += s[++i];
        else if (s[i] === "'") break;
        else v += s[i];
        i++;
      }
      i++;
    } else {
      while (i < s.length && !/\s/.test(s[i])) v += s[i++];
    }
    if (!(k in KEYS)) throw new UsageError(`--into: unsupported connection keyword "${k}"`, { hint: `use ${Object.keys(KEYS).join(', ')}, or a postgresql:// URL` });
    out[KEYS[k]] = v;
  }
  return out;
}

/**
 * Connects to the live database: the libpq environment when `conninfo` is not given,
 * else a URL or keyword/value conninfo (unset keywords still come from the environment).
 */
export async function connectLive(conninfo?: string): Promise<pg.Client> {
  let cfg: pg.ClientConfig = {};
  if (conninfo && /^postgres(ql)?:\/\//.test(conninfo)) cfg = { connectionString: conninfo };
  else if (conninfo) {
    const p = parseKeywordConninfo(conninfo);
    cfg = {
      ...(p.host ? { host: p.host } : {}),
      ...(p.port ? { port: Number(p.port) } : {}),
      ...(p.user ? { user: p.user } : {}),
      ...(p.password ? { password: p.password } : {}),
      ...(p.database ? { database: p.database } : {}),
      ...(p.application_name ? { application_name: p.application_name } : {}),
      ...(p.connect_timeout ? { connectionTimeoutMillis: Number(p.connect_timeout) * 1000 } : {}),
      ...(p.sslmode && p.sslmode !== 'disable' && p.sslmode !== 'allow' && p.sslmode !== 'prefer' ? { ssl: { rejectUnauthorized: p.sslmode === 'verify-full' || p.sslmode === 'verify-ca' } } : {}),
    };
  }
  const client = new pg.Client(cfg);
  try {
    await client.connect();
  } catch (e) {
    const where = conninfo ? redact(conninfo) : `${process.env.PGHOST ?? 'localhost'}:${process.env.PGPORT ?? '5432'}`;
    throw new PostgresError(`cannot connect to the live database at ${where}: ${redact((e as Error).message)}`, {
      hint: 'set PGHOST/PGPORT/PGUSER/PGDATABASE or pass --into CONNINFO (the password in PGPASSWORD or ~/.pgpass)',
    });
  }
  client.on('error', () => undefined); // reported by the query that fails
  return client;
}

/** The text with any password in a URL or keyword/value conninfo replaced by ***. */
export function redact(text: string): string {
  return text.replace(/(postgres(?:ql)?:\/\/[^:/?#@\s]*:)[^@\s]*@/g, '$1***@').replace(/(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)/g, '$1***');
}
