#!/usr/bin/env bash
# Makes sure the PostgreSQL server binaries Ferry's tests need are installed.
#
# Lookup (same as test/harness/pg.ts pgBinDir and scripts/setup.mjs):
#   $FERRY_PG_BIN, else the highest /usr/lib/postgresql/<v>/bin, else `pg_config --bindir`.
# When none is found and we are root on a Debian/Ubuntu host, installs
# postgresql-$FERRY_PG_VERSION (default 15) with apt-get, without starting any
# service, and drops the 'main' cluster Debian creates if this install made it.
# Otherwise prints what to install and exits 1. Prints the bin dir on success.
set -euo pipefail

VERSION="${FERRY_PG_VERSION:-15}"

has_server() { [ -n "$1" ] && [ -x "$1/postgres" ] && [ -x "$1/initdb" ]; }

find_bin() {
  if [ -n "${FERRY_PG_BIN:-}" ]; then
    has_server "$FERRY_PG_BIN" && { echo "$FERRY_PG_BIN"; return 0; }
    return 1
  fi
  local v
  if [ -d /usr/lib/postgresql ]; then
    for v in $(ls /usr/lib/postgresql | grep -E '^[0-9]+(\.[0-9]+)?$' | sort -rn); do
      has_server "/usr/lib/postgresql/$v/bin" && { echo "/usr/lib/postgresql/$v/bin"; return 0; }
    done
  fi
  local d
  d="$(pg_config --bindir 2>/dev/null || true)"
  has_server "$d" && { echo "$d"; return 0; }
  return 1
}

if dir="$(find_bin)"; then
  echo "ensure-postgres: server binaries in $dir"
  exit 0
fi

if [ -n "${FERRY_PG_BIN:-}" ]; then
  echo "ensure-postgres: FERRY_PG_BIN=$FERRY_PG_BIN does not contain the PostgreSQL server binaries (postgres, initdb)" >&2
  exit 1
fi

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  cat >&2 <<EOF
ensure-postgres: the PostgreSQL server binaries are missing; Ferry's tests run real clusters.
  Install them:  sudo apt-get install postgresql-$VERSION
  (or any PostgreSQL 13-17 server) and/or point FERRY_PG_BIN at the directory holding postgres and initdb.
EOF
  exit 1
fi

echo "ensure-postgres: installing postgresql-$VERSION with apt-get"

# Keep the package from starting its service: a policy-rc.d that says "no"
# (only if none exists; removed afterwards).
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi

mains_before="$(ls -d /etc/postgresql/*/main 2>/dev/null || true)"

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
if ! apt-get install -y -qq --no-install-recommends "postgresql-$VERSION"; then
  echo "ensure-postgres: postgresql-$VERSION is not available here; trying the distribution's default 'postgresql'"
  apt-get install -y -qq --no-install-recommends postgresql
fi

# Debian creates and registers a 'main' cluster on install; tests never use it.
# Drop only the ones this install created.
for conf in $(ls -d /etc/postgresql/*/main 2>/dev/null || true); do
  case $'\n'"$mains_before"$'\n' in *$'\n'"$conf"$'\n'*) continue ;; esac
  v="$(basename "$(dirname "$conf")")"
  echo "ensure-postgres: dropping the '$v/main' cluster the package created"
  pg_dropcluster --stop "$v" main || true
done

if dir="$(find_bin)"; then
  echo "ensure-postgres: server binaries in $dir"
  exit 0
fi
echo "ensure-postgres: installed, but no PostgreSQL server binaries found under /usr/lib/postgresql; set FERRY_PG_BIN" >&2
exit 1
