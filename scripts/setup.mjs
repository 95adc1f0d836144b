#!/usr/bin/env node
// Prepares a checkout for `npm test` and `npm run demo` (their pre-scripts).
// Runs before node_modules may exist, so it uses Node built-ins only. Steps:
//   1. dependencies: `npm ci` (fallback `npm install`) when node_modules is
//      missing or older than package-lock.json;
//   2. PostgreSQL server binaries: same lookup as test/harness/pg.ts pgBinDir;
//      when missing, scripts/ensure-postgres.sh installs them (root + apt-get)
//      or says what to install and we exit 1;
//   3. the bundle: `node scripts/build.mjs` when dist/ is older than its inputs.
// Idempotent, and quick when everything is in place. FERRY_SETUP_FORCE_BUILD=1
// rebuilds regardless.
import { spawnSync, execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const t0 = Date.now();
const say = (msg) => console.log(`setup: ${msg}`);

function run(cmd, args, quiet = false) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: quiet ? ['ignore', 'pipe', 'pipe'] : 'inherit', encoding: 'utf8' });
  if (r.error) return quiet ? { ok: false, why: r.error.message } : false;
  if (!quiet) return r.status === 0;
  const why = `${r.stderr ?? ''}`.split('\n').find((l) => /npm (error|ERR!) (?!code)\S/.test(l)) ?? `exit ${r.status}`;
  return { ok: r.status === 0, why: why.replace(/^npm (error|ERR!) /, '') };
}

function mtime(p) {
  try {
    return statSync(p).mtimeMs;
  } catch {
    return 0;
  }
}

// --- 1. dependencies -------------------------------------------------------

/** Why node_modules must be (re)installed, or '' when it is up to date. */
function depsStale() {
  const lock = join(root, 'package-lock.json');
  const hidden = join(root, 'node_modules', '.package-lock.json');
  if (existsSync(lock) && !readFileSync(lock, 'utf8').includes('"node_modules/')) return ''; // nothing to install
  if (!existsSync(join(root, 'node_modules'))) return 'node_modules is missing';
  if (!existsSync(hidden)) return 'node_modules has no .package-lock.json';
  if (!existsSync(lock) || mtime(lock) <= mtime(hidden)) return '';
  // The lock file is newer (a pull, a checkout, npm rewriting it): compare what
  // it asks for with what is installed before paying for `npm ci`.
  try {
    const want = JSON.parse(readFileSync(lock, 'utf8')).packages ?? {};
    const have = JSON.parse(readFileSync(hidden, 'utf8')).packages ?? {};
    for (const [path, meta] of Object.entries(want)) {
      if (path === '' || !path.startsWith('node_modules/')) continue;
      const got = have[path];
      if (!got) {
        if (meta.optional) continue; // platform-specific optional packages are skipped by npm
        return `${path} is not installed`;
      }
      if (got.version !== meta.version) return `${path} is ${got.version}, package-lock.json wants ${meta.version}`;
    }
    return '';
  } catch (err) {
    return `could not compare package-lock.json with node_modules (${err.message})`;
  }
}

function npm(args, quiet = false) {
  // Under `npm test`, npm_execpath is the npm that runs us: use the same one.
  const cli = process.env.npm_execpath;
  if (cli && /\.(c|m)?js$/.test(cli)) return run(process.execPath, [cli, ...args], quiet);
  return run(process.platform === 'win32' ? 'npm.cmd' : 'npm', args, quiet);
}

const stale = depsStale();
if (stale) {
  say(`installing dependencies (${stale})`);
  // npm ci's output is kept back: it refuses a lock file that lacks other platforms' optional
  // packages when the registry has none of them, and then prints its whole usage.
  const ci = npm(['ci', '--no-audit', '--no-fund'], true);
  if (!ci.ok) {
    say(`npm ci refused (${ci.why}); trying npm install, which uses the same lock file`);
    if (!npm(['install', '--no-audit', '--no-fund'])) {
      console.error('setup: could not install dependencies; run `npm install` and look at its errors');
      process.exit(1);
    }
  }
}

// --- 2. PostgreSQL -----------------------------------------------------------

function hasServer(dir) {
  return !!dir && existsSync(join(dir, 'postgres')) && existsSync(join(dir, 'initdb'));
}

/** Keep in step with pgBinDir() in test/harness/pg.ts. */
function pgBinDir() {
  if (process.env.FERRY_PG_BIN) return hasServer(process.env.FERRY_PG_BIN) ? process.env.FERRY_PG_BIN : '';
  const base = '/usr/lib/postgresql';
  if (existsSync(base)) {
    const versions = readdirSync(base)
      .filter((v) => /^\d+(\.\d+)?$/.test(v))
      .sort((a, b) => parseFloat(b) - parseFloat(a));
    for (const v of versions) if (hasServer(join(base, v, 'bin'))) return join(base, v, 'bin');
  }
  try {
    const d = execFileSync('pg_config', ['--bindir'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    if (hasServer(d)) return d;
  } catch {
    // no pg_config
  }
  return '';
}

let binDir = pgBinDir();
if (!binDir) {
  if (process.env.FERRY_PG_BIN) {
    console.error(`setup: FERRY_PG_BIN=${process.env.FERRY_PG_BIN} does not contain the PostgreSQL server binaries (postgres, initdb)`);
    process.exit(1);
  }
  say('PostgreSQL server binaries not found; running scripts/ensure-postgres.sh');
  // The script installs when it can (root + apt-get) and otherwise prints what to install.
  if (!run('bash', [join(root, 'scripts', 'ensure-postgres.sh')])) process.exit(1);
  binDir = pgBinDir();
  if (!binDir) {
    console.error('setup: PostgreSQL server binaries still not found; install postgresql-15 or set FERRY_PG_BIN');
    process.exit(1);
  }
}

// --- 3. bundle ---------------------------------------------------------------

function newestMtime(p) {
  let st;
  try {
    st = statSync(p);
  } catch {
    return 0;
  }
  if (!st.isDirectory()) return st.mtimeMs;
  let newest = st.mtimeMs; // catches deletions and renames
  for (const name of readdirSync(p)) newest = Math.max(newest, newestMtime(join(p, name)));
  return newest;
}

let buildNote = 'no scripts/build.mjs yet';
const buildScript = join(root, 'scripts', 'build.mjs');
if (existsSync(buildScript)) {
  const inputs = ['src', 'bin', 'scripts/build.mjs', 'package.json', 'package-lock.json', 'tsconfig.json', 'node_modules/.package-lock.json'];
  const newestInput = Math.max(...inputs.map((p) => newestMtime(join(root, p))));
  const built = newestMtime(join(root, 'dist'));
  if (process.env.FERRY_SETUP_FORCE_BUILD === '1' || built === 0 || built < newestInput) {
    say('building the bundle (node scripts/build.mjs)');
    if (!run(process.execPath, [buildScript])) {
      console.error('setup: the build failed (node scripts/build.mjs); see the errors above');
      process.exit(1);
    }
    buildNote = 'bundle built';
  } else {
    buildNote = 'bundle up to date';
  }
}

say(`ok: dependencies installed, PostgreSQL in ${binDir}, ${buildNote} (${Date.now() - t0} ms)`);
