// Shared helpers for the benchmarks in bench/: argument parsing, running a tool with wall time and
// peak RSS, a private Ferry bundle, restic / GNU time installation, data generation, tree hashing.
// Plain Node ESM (Node 20), no dependencies beyond what the repository already has.
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { mkdtemp, open, readdir, readFile, rm } from 'node:fs/promises';
import { cpus, loadavg, totalmem, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
export const ROOT = join(BENCH_DIR, '..');
export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

// ---------------------------------------------------------------------------------------------
// arguments and output

/** Parses `--name value` / `--flag` arguments against a spec { name: default }; booleans are flags. */
export function parseArgs(spec, usage) {
  const out = { ...spec };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-h' || a === '--help') {
      process.stdout.write(usage);
      process.exit(0);
    }
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(a);
    if (!m) die(`unexpected argument ${a}\n${usage}`);
    const key = m[1].replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    if (!(key in spec)) die(`unknown option --${m[1]}\n${usage}`);
    if (typeof spec[key] === 'boolean') {
      out[key] = m[2] === undefined ? true : m[2] !== 'false';
    } else {
      const v = m[2] ?? argv[++i];
      if (v === undefined) die(`--${m[1]} needs a value`);
      if (typeof spec[key] === 'number') {
        out[key] = Number(v);
        if (!Number.isFinite(out[key]) || out[key] <= 0) die(`--${m[1]}: not a positive number: ${v}`);
      } else out[key] = v;
    }
  }
  return out;
}

export function die(msg) {
  process.stderr.write(`bench: ${msg}\n`);
  process.exit(2);
}

export function log(msg) {
  process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

export const fmtS = (s) => (s == null ? '-' : s < 10 ? s.toFixed(2) : s.toFixed(1));
export const fmtMiB = (b) => (b == null ? '-' : (b / MiB).toFixed(b < 100 * MiB ? 1 : 0));
export const fmtRatio = (a, b) => (a == null || b == null || b === 0 ? '-' : (a / b).toFixed(2));

/** Renders rows (arrays of strings) as an aligned text table; the first row is the header. */
export function table(rows) {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => String(r[c]).length)));
  const line = (r) => r.map((v, c) => (c === 0 ? String(v).padEnd(widths[c]) : String(v).padStart(widths[c]))).join('  ');
  return [line(rows[0]), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.slice(1).map(line)].join('\n') + '\n';
}

export function machineInfo() {
  return {
    node: process.version,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model,
    memGiB: +(totalmem() / GiB).toFixed(1),
    loadavg: loadavg().map((x) => +x.toFixed(2)),
  };
}

/** Warns when other work is running (the benchmark machine is shared with tests). */
export function warnIfBusy() {
  const l = loadavg()[0];
  if (l > 0.7 * cpus().length) log(`warning: load average ${l.toFixed(2)} on ${cpus().length} cores - other processes are running, figures will be noisy`);
  return l;
}

export function writeResults(kind, data) {
  const dir = join(BENCH_DIR, 'results');
  mkdirSync(dir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:]/g, '').replace(/\..*/, '');
  const file = join(dir, `${kind}-${stamp}.json`);
  writeFileSync(file, JSON.stringify(data, null, 2) + '\n');
  return file;
}

// ---------------------------------------------------------------------------------------------
// tools

function has(cmd, args = ['--version']) {
  const r = spawnSync(cmd, args, { stdio: 'ignore' });
  return !r.error;
}

function aptInstall(pkg) {
  const install = () => spawnSync('apt-get', ['install', '-y', pkg], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  let r = install();
  if (r.status !== 0) {
    log(`apt-get install ${pkg} failed; running apt-get update and retrying`);
    spawnSync('apt-get', ['update'], { stdio: ['ignore', 'ignore', 'inherit'] });
    r = install();
  }
  return r.status === 0;
}

/** Makes sure `restic` is on PATH (installs Debian's package when root); returns its version line. */
export function ensureRestic() {
  if (!has('restic', ['version'])) {
    if (process.getuid?.() !== 0) die('restic is not installed and this is not root: install it (apt-get install restic) and run again');
    log('restic not found: apt-get install -y restic');
    if (!aptInstall('restic') || !has('restic', ['version'])) die('could not install restic with apt-get');
  }
  return spawnSync('restic', ['version'], { encoding: 'utf8' }).stdout.trim();
}

/** GNU time for peak RSS; installs Debian's `time` when root. Returns its path, or null (then /proc is polled). */
export function ensureGnuTime() {
  const ok = () => existsSync('/usr/bin/time') && spawnSync('/usr/bin/time', ['-f', '%M', 'true'], { stdio: 'ignore' }).status === 0;
  if (ok()) return '/usr/bin/time';
  if (process.getuid?.() === 0) {
    log('/usr/bin/time not found: apt-get install -y time');
    if (aptInstall('time') && ok()) return '/usr/bin/time';
  }
  log('GNU time unavailable: peak RSS is read from /proc/PID/status (VmHWM), polled every 20 ms');
  return null;
}

/**
 * Builds the current src/ with scripts/build.mjs into bench/.build/<pid>-<time>/dist/ (the script is
 * run in that directory, which holds a symlink to src/), so a concurrent `npm run build` / `npm test`
 * (which delete and rebuild dist/) cannot swap Ferry out under a running benchmark. The directory sits
 * inside the project, so the bundle resolves node_modules (native modules) as dist/ does.
 * Returns { cmd: [node, bundle], outdir } (outdir to delete afterwards).
 */
export async function ferryCommand({ useDist }) {
  if (useDist) {
    const bin = join(ROOT, 'bin', 'ferry');
    if (!existsSync(join(ROOT, 'dist', 'ferry.mjs'))) die('dist/ferry.mjs is missing: run `node scripts/build.mjs` first (or drop --use-dist)');
    return { cmd: [process.execPath, bin], outdir: null };
  }
  const outdir = join(BENCH_DIR, '.build', `${process.pid}-${Date.now()}`);
  mkdirSync(outdir, { recursive: true });
  symlinkSync(join(ROOT, 'src'), join(outdir, 'src'), 'dir');
  const r = spawnSync(process.execPath, [join(ROOT, 'scripts', 'build.mjs')], { cwd: outdir, encoding: 'utf8' });
  if (r.status !== 0 || !existsSync(join(outdir, 'dist', 'ferry.mjs'))) {
    rmSync(outdir, { recursive: true, force: true });
    die(`could not build src/ with scripts/build.mjs (someone may be mid-edit):\n${r.stderr || r.stdout}\nretry, or use --use-dist to run the existing dist/ build`);
  }
  return { cmd: [process.execPath, join(outdir, 'dist', 'ferry.mjs')], outdir };
}

export function gitInfo() {
  const git = (...a) => spawnSync('git', a, { cwd: ROOT, encoding: 'utf8' }).stdout?.trim();
  return { commit: git('rev-parse', 'HEAD'), dirtySrc: (git('status', '--short', 'src') || '').length > 0 };
}

async function pollHwm(pid, state) {
  // VmHWM is the process's own peak; it only grows, so the last value read before exit is close to final.
  while (!state.done) {
    try {
      const m = /VmHWM:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'));
      if (m) state.kb = Math.max(state.kb, Number(m[1]));
    } catch {
      /* exited */
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Runs argv[0] with argv[1..]; returns { wallS, rssKB, userS, sysS, code, stdout, stderr }.
 * Wall time is measured here around the child; peak RSS and CPU times come from GNU time (-o file).
 */
export async function measure(argv, { env, cwd, timeBin, allowFail = false, label = argv.join(' ') } = {}) {
  let full = argv;
  let timeFile = null;
  if (timeBin) {
    timeFile = join(tmpdir(), `bench-time-${process.pid}-${Math.random().toString(36).slice(2)}`);
    full = [timeBin, '-f', '%M %U %S', '-o', timeFile, ...argv];
  }
  const t0 = process.hrtime.bigint();
  const child = spawn(full[0], full.slice(1), { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  const state = { done: false, kb: 0 };
  if (!timeBin) pollHwm(child.pid, state);
  const out = [];
  const err = [];
  child.stdout.on('data', (d) => out.push(d));
  child.stderr.on('data', (d) => err.push(d));
  const code = await new Promise((res, rej) => {
    child.on('error', rej);
    child.on('close', (c, sig) => res(c ?? 128 + (sig ? 1 : 0)));
  });
  const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
  state.done = true;
  const r = { wallS, rssKB: state.kb || null, userS: null, sysS: null, code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() };
  if (timeFile) {
    try {
      const last = readFileSync(timeFile, 'utf8').trim().split('\n').pop();
      const [m, u, s] = last.split(' ').map(Number);
      Object.assign(r, { rssKB: m, userS: u, sysS: s });
    } catch {
      /* time could not write */
    }
    rmSync(timeFile, { force: true });
  }
  if (code !== 0 && !allowFail) {
    throw new Error(`${label} failed with exit code ${code}\n${r.stderr.slice(-4000)}`);
  }
  return r;
}

/** Apparent size in bytes of a directory (`du -sb`). */
export function duBytes(dir) {
  const r = spawnSync('du', ['-sb', dir], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`du -sb ${dir}: ${r.stderr}`);
  return Number(r.stdout.split(/\s/)[0]);
}

/** Disk usage in bytes of a directory (`du -sk`, allocated blocks). */
export function duDiskBytes(dir) {
  const r = spawnSync('du', ['-sk', dir], { encoding: 'utf8' });
  return Number(r.stdout.split(/\s/)[0]) * 1024;
}

/** Reads every file under the given directories once (`cat` to /dev/null) so both tools start on a warm page cache. */
export function warmCache(...dirs) {
  // A running cluster removes files while they are listed (pg_internal.init, old WAL): those are
  // skipped; a missing directory still fails.
  for (const d of dirs) if (!existsSync(d)) throw new Error(`warm-up: ${d} does not exist`);
  const r = spawnSync('sh', ['-c', 'find "$@" -type f -print0 | { xargs -0 -r cat > /dev/null 2>&1; exit 0; }', 'sh', ...dirs], { stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`warm-up of ${dirs.join(', ')} failed`);
}

export async function makeWorkDir(prefix) {
  return mkdtemp(join('/tmp', prefix));
}

/** Removes the work directory on exit / Ctrl-C unless keep. */
export function cleanupOnExit(dirs, keep) {
  let cleaned = false;
  const clean = () => {
    if (cleaned) return;
    cleaned = true;
    if (keep) {
      log(`kept ${dirs.filter(Boolean).join(' ')}`);
      return;
    }
    for (const d of dirs) if (d) rmSync(d, { recursive: true, force: true });
  };
  process.on('exit', clean);
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.on(sig, () => {
      clean();
      process.exit(130);
    });
  }
  return clean;
}

// ---------------------------------------------------------------------------------------------
// data generation

/** mulberry32: small seeded PRNG for structure (sizes, kinds, numbers in text). */
export function prng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (lo, hi) => lo + Math.floor(next() * (hi - lo + 1));
  const pick = (arr) => arr[Math.floor(next() * arr.length)];
  /** log-uniform integer in [lo, hi] */
  const logInt = (lo, hi) => Math.round(Math.exp(Math.log(lo) + next() * (Math.log(hi) - Math.log(lo))));
  return { next, int, pick, logInt };
}

const WORDS = (
  'account action address agent alpha amount archive backup balance batch beta bucket buffer cache ' +
  'catalog channel checkpoint client cluster commit config connection consumer context counter cursor ' +
  'customer daemon database delta device digest domain driver element engine entry error event export ' +
  'factory feature filter format frame gateway handler header history host index input instance item ' +
  'job journal kernel key label layer ledger limit listener loader lock manager message metric mirror ' +
  'module monitor mutex node object offset order output owner packet page parser partition payload ' +
  'pipeline policy pool process producer profile proxy query queue record region registry replica ' +
  'report request resource response result retry route runner schema scope segment sender server ' +
  'service session shard signal snapshot socket source stage state status storage stream subject ' +
  'table target task tenant thread timer token topic trace transaction tree update user value vector ' +
  'version volume warning window worker zone'
).split(' ');
const LEVELS = ['INFO', 'INFO', 'INFO', 'INFO', 'DEBUG', 'DEBUG', 'WARN', 'ERROR'];
const METHODS = ['GET', 'GET', 'GET', 'POST', 'PUT', 'DELETE'];
const CITIES = ['Berlin', 'Paris', 'Lisbon', 'Oslo', 'Madrid', 'Rome', 'Vienna', 'Prague', 'Dublin', 'Warsaw', 'Athens', 'Zurich'];
const cap = (w) => w[0].toUpperCase() + w.slice(1);

/** Text kinds: log (server log), csv (table export), json (records), code (source-like). */
export const TEXT_KINDS = ['log', 'csv', 'json', 'code'];

function textLine(kind, r, state) {
  const w = () => WORDS[(r.next() * WORDS.length) | 0];
  switch (kind) {
    case 'log': {
      state.t += r.int(1, 900);
      const d = new Date(1_700_000_000_000 + state.t);
      return (
        `${d.toISOString()} ${LEVELS[(r.next() * 8) | 0]} [${w()}-${r.int(1, 32)}] ` +
        `${METHODS[(r.next() * 6) | 0]} /api/v2/${w()}s/${r.int(1, 999999)}/${w()} ` +
        `req=${(r.next() * 0xffffffff >>> 0).toString(16)} user=${r.int(1000, 99999)} ` +
        `status=${r.next() < 0.93 ? 200 : r.pick([201, 204, 400, 404, 500, 503])} dur=${(r.next() * 250).toFixed(2)}ms ${w()} ${w()}\n`
      );
    }
    case 'csv':
      state.t++;
      return `${state.t},${cap(w())} ${cap(w())},${r.pick(CITIES)},${(r.next() * 10000).toFixed(2)},2024-${String(r.int(1, 12)).padStart(2, '0')}-${String(r.int(1, 28)).padStart(2, '0')},${w()},${r.int(0, 500)}\n`;
    case 'json':
      state.t++;
      return `{"id":${state.t},"name":"${w()} ${w()}","tags":["${w()}","${w()}"],"score":${(r.next() * 100).toFixed(3)},"active":${r.next() < 0.5},"owner":"${w()}@example.org"}\n`;
    default: {
      const f = w() + cap(w());
      return r.next() < 0.3
        ? `export function ${f}(${w()}: number, ${w()}: string): ${cap(w())} {\n  const ${w()} = ${r.int(0, 4096)};\n  return ${w()}.${w()}(${w()}, ${w()});\n}\n\n`
        : `  // ${w()} the ${w()} before ${w()} ${w()}\n  if (${w()}.${w()} > ${r.int(0, 100)}) ${f}(${w()}, '${w()}');\n`;
    }
  }
}

const pools = new Map();

/** A pool of ~4 MiB of generated lines of one kind: { buf, starts } (line i = buf[starts[i], starts[i+1])). */
function textPool(kind) {
  let p = pools.get(kind);
  if (p) return p;
  const r = prng(0x5eed + TEXT_KINDS.indexOf(kind));
  const state = { t: 0 };
  const lines = [];
  let n = 0;
  while (n < 4 * MiB) {
    const l = textLine(kind, r, state);
    lines.push(l);
    n += l.length;
  }
  const buf = Buffer.from(lines.join(''), 'latin1');
  const starts = new Uint32Array(lines.length + 1);
  for (let i = 0, o = 0; i < lines.length; i++) {
    starts[i] = o;
    o += lines[i].length;
  }
  starts[lines.length] = buf.length;
  p = { buf, starts, count: lines.length };
  pools.set(kind, p);
  return p;
}

/**
 * `size` bytes of text of the given kind (ASCII): random lines of a generated pool, with every digit
 * replaced by a random one, so the text compresses like real logs/CSV/JSON/code (zstd -3: ~25-35%)
 * but no two chunks are equal. Fast (hundreds of MiB/s), so large trees can be generated quickly.
 */
export function textBytes(kind, size, r) {
  size = Math.floor(size);
  const { buf, starts, count } = textPool(kind);
  const out = Buffer.allocUnsafe(size);
  for (let o = 0; o < size; ) {
    // a run of 1-16 consecutive pool lines (fewer copies than line by line)
    const i = (r.next() * (count - 16)) | 0;
    const j = i + 1 + ((r.next() * 16) | 0);
    o += buf.copy(out, o, starts[i], Math.min(starts[j], starts[i] + size - o));
  }
  let x = (r.next() * 0xffffffff) | 1;
  for (let i = 0; i < size; i++) {
    if (((out[i] - 48) >>> 0) < 10) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      out[i] = DIGITS[x & 255];
    }
  }
  return out;
}

const DIGITS = Uint8Array.from({ length: 256 }, (_, i) => 48 + (i % 10));

/** `size` random bytes (incompressible). */
export function randomBytesFast(size) {
  return randomFillSync(Buffer.allocUnsafe(size));
}

/** `size` bytes with 4 bits of entropy per byte (random nibbles): compresses to ~55%, never deduplicates. */
export function nibbleBytes(size) {
  const b = randomFillSync(Buffer.allocUnsafe(size));
  const words = new Uint32Array(b.buffer, b.byteOffset, size >>> 2);
  for (let i = 0; i < words.length; i++) words[i] = (words[i] & 0x0f0f0f0f) | 0x40404040;
  return b;
}

/** Writes `size` bytes produced by gen(n) in slices of up to `slice` bytes to fd at position pos (default: append). */
export async function writeGenerated(fh, size, gen, slice = 4 * MiB) {
  for (let done = 0; done < size; ) {
    const n = Math.min(slice, size - done);
    const b = gen(n);
    await fh.write(b, 0, b.length);
    done += n;
  }
}

export { open };

// ---------------------------------------------------------------------------------------------
// verification

/** Map of relative path -> { size, sha256 } of every regular file under dir (symlinks as 'link:target'). */
export async function hashTree(dir, concurrency = 4) {
  const files = [];
  const walk = async (rel) => {
    for (const e of await readdir(join(dir, rel), { withFileTypes: true })) {
      const p = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) await walk(p);
      else files.push(p);
    }
  };
  await walk('');
  const out = new Map();
  let i = 0;
  const worker = async () => {
    while (i < files.length) {
      const p = files[i++];
      const full = join(dir, p);
      const st = statSync(full);
      const h = createHash('sha256');
      await new Promise((res, rej) => {
        createReadStream(full, { highWaterMark: MiB }).on('data', (d) => h.update(d)).on('end', res).on('error', rej);
      });
      out.set(p, { size: st.size, sha256: h.digest('hex') });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return out;
}

/** Compares two hashTree maps; returns { ok, missing, extra, differ, examples }. */
export function compareTrees(expected, actual) {
  const missing = [];
  const extra = [];
  const differ = [];
  for (const [p, v] of expected) {
    const a = actual.get(p);
    if (!a) missing.push(p);
    else if (a.sha256 !== v.sha256 || a.size !== v.size) differ.push(p);
  }
  for (const p of actual.keys()) if (!expected.has(p)) extra.push(p);
  return {
    ok: missing.length + extra.length + differ.length === 0,
    files: actual.size,
    missing: missing.length,
    extra: extra.length,
    differ: differ.length,
    examples: [...missing.slice(0, 3).map((p) => `missing ${p}`), ...extra.slice(0, 3).map((p) => `extra ${p}`), ...differ.slice(0, 3).map((p) => `differs ${p}`)],
  };
}

export async function removeDir(d) {
  await rm(d, { recursive: true, force: true });
}
