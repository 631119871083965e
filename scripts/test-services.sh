#!/usr/bin/env bash
# Services the Docker backend tests talk to: a private Docker daemon and a
# locally built Python base image (no registry is reachable).
#
#   scripts/test-services.sh start   start dockerd (if ours is not already up), build the base image
#   scripts/test-services.sh stop    stop the dockerd this script started (by its PID)
#   scripts/test-services.sh env     print `export ...` lines for the tests: eval "$(... env)"
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
    if ((${#missing[@]})); then
        say "installing ${missing[*]} with apt-get"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
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

print_env() {
    echo "export DOCKER_HOST=unix://$SOCK"
    echo "export LAUNCH_TUI_TEST_BASE_IMAGE=$BASE_IMAGE"
}

case "${1:-}" in
start)
    need_root
    ensure_tools
    start_daemon
    ensure_base_image
    ;;
stop) stop_daemon ;;
env) print_env ;;
*)
    echo "usage: $0 start|stop|env" >&2
    exit 2
    ;;
esac
