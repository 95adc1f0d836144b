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

# ferry_segment NAME: whether NAME is a plain WAL segment name (24 upper-case hex digits).
ferry_segment() {
	hex='[0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F]'
	case $1 in
	$hex$hex$hex) ;;
	*) return 1 ;;
	esac
}

# ferry_json_plain S: whether JSON writes S unchanged inside quotes (no quote, backslash or
# control character), so that the scripts can write and match it as Ferry does.
ferry_json_plain() {
	case $1 in
	*[\"\\]* | *[[:cntrl:]]*) return 1 ;;
	esac
}

# ferry_worker_runs PIDFILE MARKER: whether the worker named in PIDFILE runs; sets pid. A
# recycled pid belongs to another program: its command line must name MARKER (workerRunning()).
ferry_worker_runs() {
	pid=''
	{ IFS= read -r pid <"$1"; } 2>/dev/null || return 1
	case $pid in '' | *[!0-9]*) return 1 ;; esac
	kill -0 "$pid" 2>/dev/null || return 1
	cmd=$(tr '\000' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
	case $cmd in *"$2"*) ;; *) return 1 ;; esac
}
