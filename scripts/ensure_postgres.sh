#!/usr/bin/env bash
# Ensure a PostgreSQL server for raypipe's tests is running, on loopback only.
#
#   bash scripts/ensure_postgres.sh          install (if needed) and start it
#   bash scripts/ensure_postgres.sh --url    the same, then print only its admin URL on stdout
#
# It uses a dedicated Debian cluster named "raypipe" (default port 5433) so that it never
# touches the machine's own "main" cluster. On a fresh Debian machine it installs the
# `postgresql` package first. Every log line goes to stderr; stdout carries only the URL.
# Idempotent: when the cluster is up and the role can log in, it returns in a fraction of a
# second.
#
# Environment: RAYPIPE_PG_CLUSTER (default raypipe), RAYPIPE_PG_PORT (default 5433, used
# when the cluster is created), RAYPIPE_PG_USER / RAYPIPE_PG_PASSWORD (default raypipe).
set -euo pipefail

CLUSTER="${RAYPIPE_PG_CLUSTER:-raypipe}"
PORT="${RAYPIPE_PG_PORT:-5433}"
ROLE="${RAYPIPE_PG_USER:-raypipe}"
PASSWORD="${RAYPIPE_PG_PASSWORD:-raypipe}"
HOST=127.0.0.1

print_url=0
case "${1:-}" in
  --url) print_url=1 ;;
  "") ;;
  -h | --help)
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 0
    ;;
  *)
    echo "ensure_postgres: unknown argument '$1' (expected --url or nothing)" >&2
    exit 2
    ;;
esac

# Everything but the final URL goes to stderr: fd 3 keeps the real stdout for the URL.
exec 3>&1 1>&2

log() { echo "ensure_postgres: $*" >&2; }

as_root() {
  if [[ $(id -u) -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo -n "$@"
  else
    log "need root (or sudo) to run: $*"
    exit 1
  fi
}

as_postgres() {
  if [[ $(id -un) == postgres ]]; then
    "$@"
  elif [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    sudo -n -u postgres "$@"
  fi
}

print_url_and_exit() { # port
  if ((print_url)); then
    echo "postgresql+psycopg://${ROLE}:${PASSWORD}@${HOST}:$1/postgres" >&3
  fi
  exit 0
}

# The newest installed major version, e.g. 15 on Debian 12 (16 or 17 elsewhere).
installed_version() {
  local bin v best=""
  for bin in /usr/lib/postgresql/*/bin/postgres; do
    [[ -x $bin ]] || continue
    v=${bin#/usr/lib/postgresql/}
    v=${v%%/*}
    if [[ -z $best ]] || ((v > best)); then best=$v; fi
  done
  echo "$best"
}

# One field of our cluster's line in `pg_lsclusters` (Ver Cluster Port Status Owner ...).
cluster_field() { # version field-number
  pg_lsclusters --no-header 2>/dev/null | awk -v v="$1" -v c="$CLUSTER" -v f="$2" \
    '$1 == v && $2 == c { print $f }'
}

can_login() { # port
  PGPASSWORD="$PASSWORD" PGCONNECT_TIMEOUT=3 psql -X -q -w -h "$HOST" -p "$1" -U "$ROLE" \
    -d postgres -tAc 'SELECT 1' >/dev/null 2>&1
}

# Settings for the cluster's conf.d (Debian's postgresql.conf includes it), rewritten when
# they differ so that a changed setting here reaches an existing cluster. It is a throwaway
# cluster for tests: loopback only, and no fsync. Without fsync data is at risk only on a
# power failure or an OS crash, never on a process crash, so the tests of what survives
# `kill -9` still hold; the suite creates and drops a database per test, which is several
# times faster this way.
settings="# Written by raypipe's scripts/ensure_postgres.sh; rewritten when it changes.
listen_addresses = '$HOST'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200"
conf_file() { echo "/etc/postgresql/$1/$CLUSTER/conf.d/raypipe.conf"; }

# Start or restart the cluster's server with none of this script's descriptors: the server
# outlives the script, and a server that kept the caller's stdout or stderr (a pipe into tee
# in CI, say) would hold that pipe open for as long as it runs, so the reader never saw its
# end and waited forever. pg_ctlcluster's own messages go to a file, shown when it fails.
pg_ctl_detached() { # version action
  local out
  out=$(mktemp)
  if ! (
    for fd in $(ls "/proc/$BASHPID/fd"); do
      if ((fd > 2)); then eval "exec $fd>&-"; fi
    done
    as_root pg_ctlcluster "$1" "$CLUSTER" "$2" </dev/null >"$out" 2>&1
  ); then
    cat "$out" >&2
    rm -f "$out"
    log "pg_ctlcluster $1 $CLUSTER $2 failed"
    exit 1
  fi
  rm -f "$out"
}

version=$(installed_version)

# Fast path: installed, running and accepting the role's password.
if [[ -n $version ]] && command -v pg_lsclusters >/dev/null 2>&1; then
  port=$(cluster_field "$version" 3)
  if [[ -n $port && $(cluster_field "$version" 4) == online ]] \
    && [[ $(cat "$(conf_file "$version")" 2>/dev/null || true) == "$settings" ]] \
    && can_login "$port"; then
    print_url_and_exit "$port"
  fi
fi

if [[ -z $version ]] || ! command -v pg_createcluster >/dev/null 2>&1 \
  || ! command -v psql >/dev/null 2>&1; then
  log "PostgreSQL is not installed; installing Debian's postgresql package"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  version=$(installed_version)
  if [[ -z $version ]]; then
    log "postgresql was installed but no server binary was found under /usr/lib/postgresql"
    exit 1
  fi
fi

if [[ -z $(cluster_field "$version" 2) ]]; then
  log "creating cluster $version/$CLUSTER on port $PORT"
  as_root pg_createcluster "$version" "$CLUSTER" -p "$PORT" \
    -- --auth-local=peer --auth-host=scram-sha-256 >/dev/null
fi

conf=$(conf_file "$version")
if [[ $(as_root cat "$conf" 2>/dev/null || true) != "$settings" ]]; then
  log "writing $conf"
  printf '%s\n' "$settings" | as_root tee "$conf" >/dev/null
  as_root chown postgres:postgres "$conf"
  if [[ $(cluster_field "$version" 4) == online ]]; then
    pg_ctl_detached "$version" restart
  fi
fi

port=$(cluster_field "$version" 3)
if [[ $(cluster_field "$version" 4) != online ]]; then
  log "starting cluster $version/$CLUSTER on $HOST:$port"
  # Under systemd this is redirected to `systemctl start postgresql@VERSION-CLUSTER`, so the
  # cluster is supervised; in a container without systemd pg_ctlcluster starts it directly.
  pg_ctl_detached "$version" start
fi

for _ in $(seq 1 60); do
  if pg_isready -q -h "$HOST" -p "$port"; then break; fi
  sleep 0.5
done
if ! pg_isready -q -h "$HOST" -p "$port"; then
  log "cluster $version/$CLUSTER is not ready;" \
    "see /var/log/postgresql/postgresql-$version-$CLUSTER.log"
  exit 1
fi

# The role the tests use: it logs in with a password over TCP and creates a database per test.
as_postgres psql -X -q -p "$port" -d postgres -v ON_ERROR_STOP=1 \
  -v role="$ROLE" -v password="$PASSWORD" >/dev/null <<'SQL'
SET client_min_messages = warning;
SELECT format('CREATE ROLE %I LOGIN CREATEDB PASSWORD %L', :'role', :'password')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('ALTER ROLE %I LOGIN CREATEDB PASSWORD %L', :'role', :'password') \gexec
SELECT format('GRANT pg_signal_backend TO %I', :'role') \gexec
SQL

if ! can_login "$port"; then
  log "role $ROLE cannot log in to $HOST:$port with its password"
  exit 1
fi
log "PostgreSQL $version (cluster $CLUSTER) is ready on $HOST:$port"
print_url_and_exit "$port"
