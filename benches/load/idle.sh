#!/usr/bin/env bash
# Memory per idle keep-alive client connection: nginx, the bare hyper proxy and tower-gateway
# (proxy only) each get
# CONNECTIONS client connections (default 10 000) that send one request, read the answer and
# then sit idle; the resident memory of the proxy (nginx: master and workers) is read before
# and after, and the difference divided by the connections.
#
#   benches/load/idle.sh
#   CONNECTIONS=5000 benches/load/idle.sh
#
# Everything targets 127.0.0.1 and stops by itself.
set -euo pipefail

CONNECTIONS=${CONNECTIONS:-10000}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/../common.sh"
need nginx nginx-light
need python3 python3
[ -x /usr/sbin/nginx ] && PATH="$PATH:/usr/sbin"
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((CONNECTIONS + 1000)) ]; then
    echo "error: the open-file limit ($(ulimit -n)) is below $((CONNECTIONS + 1000))" >&2
    exit 1
fi

echo "building (release)…" >&2
(cd "$root" && cargo build --release --quiet --features program --example gateway --example load-upstream --example load-bare-proxy)
bin="$root/target/release/examples"
"$bin/load-upstream" 127.0.0.1:18080 2>"$work/upstream.log" &
pids+=($!)
wait_port 18080

mkdir -p "$work/nginx/logs"
cp "$here/nginx-idle.conf" "$work/nginx/nginx.conf"
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -e stderr 2>"$work/nginx.log" &
pids+=($!)
nginx_pid=$!
wait_port 18071

RUST_LOG=warn "$bin/gateway" --config "$here/gateway.yaml" --access-log off --request-id off --metrics off \
    --max-connections $((CONNECTIONS + 1000)) --client-keepalive-timeout 300 \
    --proxy-listen 127.0.0.1:18072 --admin-listen 127.0.0.1:18073 2>"$work/gateway.log" &
pids+=($!)
gateway_pid=$!
wait_port 18072

"$bin/load-bare-proxy" 127.0.0.1:18074 127.0.0.1:18080 2>"$work/bare.log" &
pids+=($!)
bare_pid=$!
wait_port 18074

# Opens the connections (100 at a time), one request each, then holds them until stdin closes.
cat >"$work/hold.py" <<'PY'
import asyncio, sys

async def one(port, held):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /api/users HTTP/1.1\r\nhost: idle.test\r\n\r\n")
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length"))
    await reader.readexactly(length)
    held.append(writer)

async def main(port, count):
    held = []
    for start in range(0, count, 100):
        await asyncio.gather(*(one(port, held) for _ in range(min(100, count - start))))
    print(len(held), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
PY

measure() {
    local name=$1 pid=$2 port=$3 before after fifo
    # Warm the allocator and the upstream pool with the same traffic shape first.
    python3 -c "
import socket
for _ in range(200):
    s = socket.create_connection(('127.0.0.1', $port)); s.sendall(b'GET /api/users HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n'); s.recv(4096); s.close()
"
    sleep 1
    before=$(rss_kib "$pid")
    fifo="$work/$name.fifo"
    mkfifo "$fifo"
    python3 "$work/hold.py" "$port" "$CONNECTIONS" <"$fifo" >"$work/$name.held" &
    local holder=$!
    exec 9>"$fifo"
    while [ ! -s "$work/$name.held" ]; do sleep 0.5; done
    sleep 2
    after=$(rss_kib "$pid")
    exec 9>&-
    wait "$holder" || true
    printf '| %s | %.1f | %.1f | %.2f |\n' "$name" "$(echo "$before / 1024" | bc -l)" "$(echo "$after / 1024" | bc -l)" \
        "$(echo "($after - $before) / $CONNECTIONS" | bc -l)"
}

echo
echo "machine: $(nproc) cores; $CONNECTIONS idle keep-alive client connections, one request each"
echo
echo "| proxy | RSS before (MiB) | RSS with the connections (MiB) | KiB per idle connection |"
echo "| --- | --- | --- | --- |"
measure nginx "$nginx_pid" 18071
measure bare-hyper "$bare_pid" 18074
measure tower-gateway "$gateway_pid" 18072
