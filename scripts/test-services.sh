#!/usr/bin/env bash
# Services the tests talk to: a private Docker daemon with a locally built Python
# base image (no public registry is reachable), a private PostgreSQL server, and a
# private image registry on loopback.
#
#   scripts/test-services.sh start   start dockerd, PostgreSQL and the registry (those of ours
#                                    not already up), build the base image
#   scripts/test-services.sh stop    stop the servers this script started (by their PIDs)
#   scripts/test-services.sh env     print `export ...` lines for the tests: eval "$(... env)"
#
# PostgreSQL runs from a cluster of its own (initdb as the `postgres` user) under
# $PG_STATE, listening on 127.0.0.1:$PG_PORT and on a socket in that directory;
# the tests connect as role `launch` (password auth over TCP) and make one
# database per test.
#
# The registry is Debian's docker-registry (the open-source Distribution registry),
# run from a config of our own under $REGISTRY_STATE: plain HTTP on
# 127.0.0.1:$REGISTRY_PORT only, no auth, deletes enabled. dockerd pushes to it over
# plain HTTP because it treats 127.0.0.0/8 as an insecure registry by default.
# The package's own service (:5000 on every interface) is never started or enabled.
#
# The daemon must not touch host networking: no bridge, no iptables, no IP
# forwarding or masquerading. It listens on a unix socket only. Containers
# then run with network "none"; image builds that install packages use "host".
set -euo pipefail

STATE_DIR=${LAUNCH_TUI_DOCKER_STATE:-/tmp/launch-tui-docker}
DATA_ROOT=${LAUNCH_TUI_DOCKER_DATA:-/var/lib/launch-tui-docker}
CACHE_DIR=${LAUNCH_TUI_CACHE:-/var/cache/launch-tui}
BASE_IMAGE=${LAUNCH_TUI_TEST_BASE_IMAGE:-launch-tui/python-base:bookworm}
MIRROR=${LAUNCH_TUI_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
PG_STATE=${LAUNCH_TUI_PG_STATE:-/tmp/launch-tui-pg}
PG_PORT=${LAUNCH_TUI_PG_PORT:-55432}
PG_ROLE=launch
PG_PASSWORD=launch-test-pw
REGISTRY_STATE=${LAUNCH_TUI_REGISTRY_STATE:-/tmp/launch-tui-registry}
REGISTRY_DATA=${LAUNCH_TUI_REGISTRY_DATA:-/var/lib/launch-tui-registry}
REGISTRY_PORT=${LAUNCH_TUI_REGISTRY_PORT:-55000}

SOCK="$STATE_DIR/docker.sock"
PIDFILE="$STATE_DIR/docker.pid"
OURS="$STATE_DIR/started-by-us"   # holds the PID of the dockerd we started
LOG="$STATE_DIR/dockerd.log"
ROOTFS_TAR="$CACHE_DIR/rootfs-$SUITE-python.tar"

say() { echo "test-services: $*" >&2; }
die() { say "error: $*"; exit 1; }

docker_cmd() { DOCKER_HOST="unix://$SOCK" docker "$@"; }

answering() { docker_cmd info >/dev/null 2>&1; }

need_root() {
    [[ $(id -u) -eq 0 ]] || die "must run as root (dockerd and debootstrap need it)."
}

# A fresh machine has neither; install them from Debian's archive.
ensure_tools() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v docker >/dev/null || missing+=(docker.io)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    [[ -n $(pg_bindir) ]] || missing+=(postgresql)
    command -v faketime >/dev/null || missing+=(faketime)
    command -v docker-registry >/dev/null || missing+=(docker-registry)
    command -v kubectl >/dev/null || missing+=(kubernetes-client)
    command -v curl >/dev/null || missing+=(curl)
    if ((${#missing[@]})); then
        # Debian's postgresql package would make and start a cluster of its own on
        # port 5432; the tests use a private one (start_postgres), so make none.
        if [[ " ${missing[*]} " == *" postgresql "* && ! -e /etc/postgresql-common/createcluster.conf ]]; then
            mkdir -p /etc/postgresql-common
            echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.conf
        fi
        # No package may start its service while we install (docker-registry's would
        # listen on :5000 on every interface): policy-rc.d answers 101, "denied", to
        # invoke-rc.d and deb-systemd-invoke. One already in place is left alone.
        local policy=/usr/sbin/policy-rc.d made_policy=
        if [[ ! -e $policy ]]; then
            printf '#!/bin/sh\n# launch-tui test-services: no service starts during install\nexit 101\n' \
                >"$policy"
            chmod 0755 "$policy"
            made_policy=1
        fi
        say "installing ${missing[*]} with apt-get"
        export DEBIAN_FRONTEND=noninteractive
        local rc=0
        { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" \
            >/dev/null; } || rc=$?
        [[ -z $made_policy ]] || rm -f "$policy"
        ((rc == 0)) || die "apt-get install ${missing[*]} failed."
        if [[ " ${missing[*]} " == *" docker-registry "* ]]; then
            # Nor start at the next boot: we run a registry of our own (start_registry).
            update-rc.d docker-registry disable >/dev/null 2>&1 || true
            deb-systemd-helper disable docker-registry.service >/dev/null 2>&1 || true
        fi
    fi
}

start_daemon() {
    if answering; then
        say "dockerd already answering on $SOCK"
        return
    fi
    mkdir -p "$STATE_DIR" "$DATA_ROOT"
    if [[ -f $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
        die "a dockerd (PID $(cat "$PIDFILE")) holds $PIDFILE but does not answer; see $LOG."
    fi
    rm -f "$PIDFILE" "$OURS"
    say "starting dockerd on $SOCK (data $DATA_ROOT, log $LOG)"
    # setsid: the daemon outlives this script and the shell that ran it.
    setsid dockerd \
        --host "unix://$SOCK" \
        --data-root "$DATA_ROOT" \
        --exec-root "$STATE_DIR/exec" \
        --pidfile "$PIDFILE" \
        --bridge=none \
        --iptables=false \
        --ip6tables=false \
        --ip-forward=false \
        --ip-masq=false \
        </dev/null >"$LOG" 2>&1 &
    local launcher=$!
    local i
    for i in $(seq 1 120); do
        if answering; then
            # dockerd writes its own PID; that, not the launcher's, is what we stop.
            cat "$PIDFILE" >"$OURS"
            say "dockerd is up (PID $(cat "$OURS"))"
            return
        fi
        if ! kill -0 "$launcher" 2>/dev/null; then
            tail -n 20 "$LOG" >&2 || true
            die "dockerd exited while starting; the log above is from $LOG."
        fi
        sleep 0.5
    done
    tail -n 20 "$LOG" >&2 || true
    die "dockerd did not answer on $SOCK within 60s; see $LOG."
}

# debootstrap once into a cached tarball; later imports take seconds.
ensure_base_image() {
    if docker_cmd image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        say "base image $BASE_IMAGE present"
        return
    fi
    mkdir -p "$CACHE_DIR"
    if [[ ! -s $ROOTFS_TAR ]]; then
        local rootfs="$CACHE_DIR/rootfs-$SUITE.tmp"
        rm -rf "$rootfs"
        say "debootstrap $SUITE with python3 into $rootfs (about a minute or two)"
        if ! debootstrap --variant=minbase --include=python3,python3-venv,python3-pip \
            "$SUITE" "$rootfs" "$MIRROR" >"$CACHE_DIR/debootstrap.log" 2>&1; then
            tail -n 20 "$CACHE_DIR/debootstrap.log" >&2 || true
            die "debootstrap failed; see $CACHE_DIR/debootstrap.log."
        fi
        # Package caches only make the image bigger.
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
        tar -C "$rootfs" -cf "$ROOTFS_TAR.part" .
        mv "$ROOTFS_TAR.part" "$ROOTFS_TAR"
        rm -rf "$rootfs"
    else
        say "using cached root filesystem $ROOTFS_TAR"
    fi
    say "importing $BASE_IMAGE"
    docker_cmd import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' \
        "$ROOTFS_TAR" "$BASE_IMAGE" >/dev/null
    say "base image $BASE_IMAGE ready"
}

stop_daemon() {
    if [[ ! -f $OURS ]]; then
        say "no dockerd started by this script; nothing to stop"
        return
    fi
    local pid
    pid=$(cat "$OURS")
    # Only the process we started, and only if that PID is still a dockerd.
    if ! kill -0 "$pid" 2>/dev/null || [[ $(cat "/proc/$pid/comm" 2>/dev/null) != dockerd ]]; then
        say "dockerd PID $pid is already gone"
        rm -f "$OURS"
        return
    fi
    say "stopping dockerd (PID $pid)"
    kill -TERM "$pid"
    local i
    for i in $(seq 1 60); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "dockerd did not stop within 30s; killing PID $pid"
        kill -KILL "$pid"
    fi
    rm -f "$OURS"
    say "dockerd stopped"
}

# ---------------------------------------------------------------- PostgreSQL

# The directory of the newest installed server's binaries (Debian puts them under
# /usr/lib/postgresql/<major>/bin, off PATH); empty when there is none.
pg_bindir() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [[ -n $dir && -x $dir/pg_ctl ]]; then
        echo "$dir"
    elif command -v pg_ctl >/dev/null; then
        dirname "$(command -v pg_ctl)"
    fi
}

as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }

pg_answering() {
    as_postgres "$(pg_bindir)/pg_isready" -q -h "$PG_STATE" -p "$PG_PORT" 2>/dev/null
}

start_postgres() {
    local bin data="$PG_STATE/data" ours="$PG_STATE/started-by-us" log="$PG_STATE/postgres.log"
    bin=$(pg_bindir)
    [[ -n $bin ]] || die "no PostgreSQL server binaries (Debian package postgresql)."
    id postgres >/dev/null 2>&1 || die "there is no 'postgres' user to run the server as."
    if pg_answering; then
        say "PostgreSQL already answering on 127.0.0.1:$PG_PORT"
        return
    fi
    mkdir -p "$PG_STATE"
    chown postgres:postgres "$PG_STATE"
    chmod 0700 "$PG_STATE"
    if [[ ! -s $data/PG_VERSION ]]; then
        say "initdb $data"
        local pwfile="$PG_STATE/pw"
        echo "$PG_PASSWORD" >"$pwfile"
        chown postgres "$pwfile"
        as_postgres "$bin/initdb" -D "$data" -U postgres --auth-local=trust \
            --auth-host=scram-sha-256 --pwfile="$pwfile" -E UTF8 --locale=C.UTF-8 \
            >"$PG_STATE/initdb.log" 2>&1 || {
            tail -n 20 "$PG_STATE/initdb.log" >&2
            die "initdb failed; see $PG_STATE/initdb.log."
        }
        rm -f "$pwfile"
    fi
    rm -f "$ours"
    say "starting PostgreSQL on 127.0.0.1:$PG_PORT (data $data, log $log)"
    # Many tests each open a few connections; fsync off: the data is thrown away.
    as_postgres "$bin/pg_ctl" -D "$data" -l "$log" -w -t 60 start -o \
        "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_STATE -c max_connections=400 \
         -c fsync=off -c synchronous_commit=off -c full_page_writes=off" >/dev/null ||
        {
            tail -n 20 "$log" >&2 || true
            die "PostgreSQL did not start; see $log."
        }
    head -n 1 "$data/postmaster.pid" >"$ours"
    # The role the tests use: a password over TCP, allowed to make databases.
    as_postgres "$bin/psql" -q -h "$PG_STATE" -p "$PG_PORT" -U postgres -d postgres \
        -v ON_ERROR_STOP=1 >/dev/null <<SQL || die "cannot create the test role."
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_ROLE') THEN
    CREATE ROLE $PG_ROLE LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
  END IF;
END \$\$;
-- Dropping a test's database ends sessions left on it, also of roles a test made.
GRANT pg_signal_backend TO $PG_ROLE;
SQL
    say "PostgreSQL is up (PID $(cat "$ours"))"
}

stop_postgres() {
    local ours="$PG_STATE/started-by-us" pid
    if [[ ! -f $ours ]]; then
        say "no PostgreSQL started by this script; nothing to stop"
        return
    fi
    pid=$(cat "$ours")
    if ! kill -0 "$pid" 2>/dev/null || [[ $(cat "/proc/$pid/comm" 2>/dev/null) != postgres* ]]; then
        say "PostgreSQL PID $pid is already gone"
        rm -f "$ours"
        return
    fi
    say "stopping PostgreSQL (PID $pid)"
    as_postgres "$(pg_bindir)/pg_ctl" -D "$PG_STATE/data" -m fast -w -t 60 stop >/dev/null ||
        kill -TERM "$pid"
    rm -f "$ours"
}

# ------------------------------------------------------------------ registry

registry_answering() {
    curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$REGISTRY_PORT/v2/" 2>/dev/null
}

start_registry() {
    local ours="$REGISTRY_STATE/started-by-us" log="$REGISTRY_STATE/registry.log"
    local config="$REGISTRY_STATE/config.yml"
    command -v docker-registry >/dev/null || die "no docker-registry (Debian package docker-registry)."
    if registry_answering; then
        say "registry already answering on 127.0.0.1:$REGISTRY_PORT"
        return
    fi
    if [[ -f $ours ]] && kill -0 "$(cat "$ours")" 2>/dev/null; then
        die "a registry (PID $(cat "$ours")) is ours but does not answer; see $log."
    fi
    mkdir -p "$REGISTRY_STATE" "$REGISTRY_DATA"
    rm -f "$ours"
    cat >"$config" <<YAML
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $REGISTRY_DATA
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$REGISTRY_PORT
  headers:
    X-Content-Type-Options: [nosniff]
YAML
    say "starting the registry on 127.0.0.1:$REGISTRY_PORT (data $REGISTRY_DATA, log $log)"
    # setsid: it outlives this script; its own PID (no wrapper) is what we stop.
    setsid docker-registry serve "$config" </dev/null >"$log" 2>&1 &
    local pid=$!
    local i
    for i in $(seq 1 60); do
        if registry_answering; then
            echo "$pid" >"$ours"
            say "registry is up (PID $pid)"
            return
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$log" >&2 || true
            die "the registry exited while starting; the log above is from $log."
        fi
        sleep 0.5
    done
    kill -TERM "$pid" 2>/dev/null || true
    tail -n 20 "$log" >&2 || true
    die "the registry did not answer on 127.0.0.1:$REGISTRY_PORT within 30s; see $log."
}

stop_registry() {
    local ours="$REGISTRY_STATE/started-by-us" pid
    if [[ ! -f $ours ]]; then
        say "no registry started by this script; nothing to stop"
        return
    fi
    pid=$(cat "$ours")
    # Only the process we started, and only if that PID is still a docker-registry.
    if ! kill -0 "$pid" 2>/dev/null || [[ $(cat "/proc/$pid/comm" 2>/dev/null) != docker-registry ]]; then
        say "registry PID $pid is already gone"
        rm -f "$ours"
        return
    fi
    say "stopping the registry (PID $pid)"
    kill -TERM "$pid"
    local i
    for i in $(seq 1 20); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "the registry did not stop within 10s; killing PID $pid"
        kill -KILL "$pid"
    fi
    rm -f "$ours"
}

print_env() {
    echo "export DOCKER_HOST=unix://$SOCK"
    echo "export LAUNCH_TUI_TEST_BASE_IMAGE=$BASE_IMAGE"
    # A server URL; the tests make a database of their own for each test.
    echo "export LAUNCH_TUI_TEST_PG=postgresql://$PG_ROLE:$PG_PASSWORD@127.0.0.1:$PG_PORT/postgres"
    echo "export LAUNCH_TUI_TEST_REGISTRY=127.0.0.1:$REGISTRY_PORT"
}

case "${1:-}" in
start)
    need_root
    ensure_tools
    start_daemon
    ensure_base_image
    start_postgres
    start_registry
    ;;
stop)
    stop_registry
    stop_postgres
    stop_daemon
    ;;
env) print_env ;;
*)
    echo "usage: $0 start|stop|env" >&2
    exit 2
    ;;
esac
