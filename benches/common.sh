# Shell helpers shared by the load and soak scripts (sourced, not run): a work folder and the
# processes a script starts, cleaned up on exit; installing a missing tool; waiting for a port.

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# need COMMAND PACKAGE: installs PACKAGE from the OS packages when COMMAND is missing (as
# root), or stops with a message.
need() {
    command -v "$1" >/dev/null 2>&1 && return
    echo "installing $2 from the OS packages" >&2
    if [ "$(id -u)" -eq 0 ]; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2") >&2
    else
        echo "error: $1 is missing; install the $2 package" >&2
        exit 1
    fi
}

# wait_port PORT: waits up to 10 s for something to listen on 127.0.0.1:PORT.
wait_port() {
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "error: nothing listens on port $1" >&2
    exit 1
}

# rss_kib PID: resident memory (KiB) of a process and its direct children (nginx's workers).
rss_kib() {
    local total=0 pid
    for pid in "$1" $(pgrep -P "$1" || true); do
        [ -r "/proc/$pid/status" ] && total=$((total + $(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")))
    done
    echo "$total"
}
