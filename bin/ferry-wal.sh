# Sourced by bin/ferry-wal-push and bin/ferry-wal-fetch, the shell entries of async WAL mode:
# what both must compute exactly as Ferry does (src/postgres/wal-async.ts).

# ferry_abs PATH: sets abs to PATH made absolute the way Node's path.resolve makes it.
# Returns 1 for a path that would need normalising; the caller leaves that one to ferry.
ferry_abs() {
	case $1 in
	/*) abs=$1 ;;
	*) abs=$(pwd -P)/$1 ;;
	esac
	case $abs in
	*//* | */./* | */../* | */. | */.. | */) return 1 ;;
	esac
}

# ferry_spool REPO DIR: when spool is empty, sets it to defaultSpool(REPO, DIR):
# <tmpdir>/ferry-spool-<uid>-<first 12 hex of sha256(REPO NUL DIR)>. Returns 1 for a spool
# given as a relative path.
ferry_spool() {
	if [ -n "$spool" ]; then
		case $spool in
		/*) return 0 ;;
		*) return 1 ;;
		esac
	fi
	tmp=${TMPDIR:-${TMP:-${TEMP:-/tmp}}}
	[ "$tmp" = / ] || tmp=${tmp%/}
	h=$(printf '%s\000%s' "$1" "$2" | sha256sum) || return 1
	h=${h%"${h#????????????}"}
	spool=$tmp/ferry-spool-$(id -u)-$h
}
