#!/usr/bin/env bash
# Soak test (not a CI test): legitimate load with wrk on one route for DURATION seconds while
# the hostile side (benches/soak/hostile.rs, from another loopback address) runs every attack
# of tests/hostile.rs and the Admin API reconfigures the gateway every few seconds.
#
#   benches/soak/run.sh                 # 10 minutes
#   DURATION=120 benches/soak/run.sh
#
# Reports the legitimate traffic's errors (must be 0) and p99, what the hostile side tried
# and got, and the gateway's RSS over time (must be flat after the first minute). Everything
# targets 127.0.0.0/8 and stops by itself.
set -euo pipefail

DURATION=${DURATION:-600}
CONNS=${CONNS:-50}
WARMUP=${WARMUP:-60}

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# A work folder ($work) and the processes started ($pids), both gone on exit.
. "$here/../common.sh"
need wrk wrk

echo "building (release)…" >&2
(cd "$root" && cargo build --release --quiet --features program --example gateway --example load-upstream --example soak-hostile)
bin="$root/target/release/examples"

"$bin/load-upstream" 127.0.0.1:18180 2>"$work/upstream.log" &
pids+=($!)
wait_port 18180

# Short client timeouts so that the attacks cycle many times within the run.
RUST_LOG=warn "$bin/gateway" --config "$here/gateway.yaml" --access-log off \
    --proxy-listen 127.0.0.1:18183 --admin-listen 127.0.0.1:18184 \
    --header-timeout 10 --client-body-timeout 5 --send-timeout 10 \
    --max-connections-per-ip 1000 2>"$work/gateway.log" &
pids+=($!)
gateway_pid=$!
wait_port 18183

admin=http://127.0.0.1:18184
legit=http://127.0.0.1:18183/api/legit
curl -fsS "$legit" >/dev/null

# RSS every 10 s.
(
    start=$(date +%s)
    while kill -0 "$gateway_pid" 2>/dev/null; do
        echo "$(($(date +%s) - start)) $(awk '/VmRSS/ {print $2}' "/proc/$gateway_pid/status")"
        sleep 10
    done
) >"$work/rss" &
pids+=($!)

# The Admin API changes the configuration every 3 s: a route comes and goes, the legitimate
# service's retries change.
(
    n=0
    end=$(($(date +%s) + DURATION))
    while [ "$(date +%s)" -lt "$end" ]; do
        n=$((n + 1))
        if [ $((n % 2)) -eq 0 ]; then
            curl -fsS -X POST "$admin/services/limited/routes" -d "name=extra" -d "paths[]=/api/extra" >/dev/null || echo "admin change $n failed" >&2
        else
            curl -fsS -X DELETE "$admin/routes/extra" >/dev/null 2>&1 || true
        fi
        curl -fsS -X PATCH "$admin/services/legit" -d "retries=$((n % 5))" >/dev/null || echo "admin change $n failed" >&2
        sleep 3
    done
    echo "$n" >"$work/admin-changes"
) &
pids+=($!)

"$bin/soak-hostile" 127.0.0.1:18183 "$DURATION" 127.0.0.2 >"$work/hostile" 2>"$work/hostile.err" &
hostile_pid=$!
pids+=($hostile_pid)

echo "soak: ${DURATION}s of wrk -t1 -c$CONNS on /api/legit, hostile clients from 127.0.0.2, Admin API changes every 3 s" >&2
wrk -t1 -c"$CONNS" -d"${DURATION}s" --timeout 10s --latency "$legit" >"$work/wrk"
wait "$hostile_pid" || true
sleep 1

requests=$(awk '/requests in/ {print $1}' "$work/wrk")
non2xx=$(awk '/Non-2xx/ {print $NF}' "$work/wrk")
socket=$(awk -F'[ ,]+' '/Socket errors/ {print $4 + $6 + $8 + $10}' "$work/wrk")
p99=$(awk '$1 == "99%" {print $2}' "$work/wrk")
rps=$(awk '/^Requests\/sec/ {print $2}' "$work/wrk")
errors=$(( ${non2xx:-0} + ${socket:-0} ))

echo
echo "machine: $(nproc) cores, $(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ *//')"
echo "legitimate: $requests requests ($rps/s), errors $errors (non-2xx ${non2xx:-0}, socket ${socket:-0}), p99 $p99"
echo "admin changes: $(cat "$work/admin-changes" 2>/dev/null || echo '?')"
echo "hostile:"
sed 's/^/  /' "$work/hostile"
grep -m3 WRONG "$work/hostile.err" | sed 's/^/  /' || true
echo "gateway RSS (KiB) every 10 s:"
awk '{printf "%s%s", (NR > 1 ? " " : "  "), $2} END {print ""}' "$work/rss"
awk -v warm="$WARMUP" '
    { t[NR] = $1; r[NR] = $2 }
    END {
        if (NR < 6) { print "RSS: too short a run to judge"; exit }
        for (i = 1; i <= NR; i++) if (t[i] >= warm && !base) { base = r[i]; at = t[i] }
        # The second half: memory that still grows there is a leak, not a warm-up.
        half = int(NR / 2) + 1; lo = r[half]; hi = r[half]
        for (i = half; i <= NR; i++) { if (r[i] < lo) lo = r[i]; if (r[i] > hi) hi = r[i] }
        printf "RSS: %d KiB at %ds; over the second half (from %ds) %d..%d KiB (%.1f%% spread), %d KiB at the end\n", base, at, t[half], lo, hi, (hi - lo) * 100 / lo, r[NR]
    }' "$work/rss"
if grep -q "WARN\|ERROR" "$work/gateway.log"; then
    echo "gateway warnings (first 5):"
    grep -m5 "WARN\|ERROR" "$work/gateway.log" | sed 's/^/  /'
fi
[ "$errors" -eq 0 ]
