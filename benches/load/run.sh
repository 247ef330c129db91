#!/usr/bin/env bash
# Load benchmark: the upstream alone, nginx, a bare hyper proxy and tower-gateway in front of
# the same upstream, loaded by wrk in interleaved rounds on this machine's loopback.
#
#   benches/load/run.sh                      # 3 rounds of 8 s per target
#   ROUNDS=5 DURATION=10 benches/load/run.sh
#   STORES=1 benches/load/run.sh             # also: the gateway with a Kong rate-limiting
#                                            # plugin counted locally, and through Redis
#
# Prints, per target: requests/s, p50 and p99 latency (medians over the rounds), CPU time per
# request of the proxy process (all its threads; nginx: master and workers), then the ratios
# gateway/nginx and gateway/bare-hyper. Everything targets 127.0.0.1 and stops by itself.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
THREADS=${THREADS:-2}
CONNS=${CONNS:-100}
PATH_UNDER_TEST=${PATH_UNDER_TEST:-/api/users}

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# A work folder ($work) and the processes started ($pids), both gone on exit.
. "$here/../common.sh"
need wrk wrk
need nginx nginx-light
STORES=${STORES:-0}
[ "$STORES" = 1 ] && need redis-server redis-server
[ -x /usr/sbin/nginx ] && PATH="$PATH:/usr/sbin"

echo "building (release)…" >&2
features=""
[ "$STORES" = 1 ] && features="--features redis"
(cd "$root" && cargo build --release --quiet $features --example gateway --example load-upstream --example load-bare-proxy)
bin="$root/target/release/examples"

"$bin/load-upstream" 127.0.0.1:18080 2>"$work/upstream.log" &
pids+=($!); upstream_pid=$!
wait_port 18080

mkdir -p "$work/nginx/logs"
cp "$here/nginx.conf" "$work/nginx/nginx.conf"
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -e stderr 2>"$work/nginx.log" &
pids+=($!); nginx_pid=$!
wait_port 18081

"$bin/load-bare-proxy" 127.0.0.1:18082 127.0.0.1:18080 2>"$work/bare.log" &
pids+=($!); bare_pid=$!
wait_port 18082

RUST_LOG=warn "$bin/gateway" --config "$here/gateway.yaml" --access-log off --request-id off --metrics off \
    --proxy-listen 127.0.0.1:18083 --admin-listen 127.0.0.1:18084 2>"$work/gateway.log" &
pids+=($!); gateway_pid=$!
wait_port 18083

declare -A port=([upstream]=18080 [nginx]=18081 [bare-hyper]=18082 [gateway]=18083)
declare -A proc=([upstream]=$upstream_pid [nginx]=$nginx_pid [bare-hyper]=$bare_pid [gateway]=$gateway_pid)
targets=(upstream nginx bare-hyper gateway)

if [ "$STORES" = 1 ]; then
    redis-server --port 18089 --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
    pids+=($!)
    wait_port 18089
    # The same route with Kong's rate-limiting plugin: a limit never reached, so that every
    # request pays the counting; one client address, so one key (the hardest case).
    for store in local redis; do
        cp "$here/gateway.yaml" "$work/$store.yaml"
        cat >>"$work/$store.yaml" <<YAML
    plugins:
      - name: rate-limiting
        config:
          second: 1000000000
          policy: $store
          redis:
            host: 127.0.0.1
            port: 18089
YAML
        [ "$store" = local ] && sed -i '/redis:/,$d' "$work/$store.yaml"
    done
    for store in local redis; do
        p=$([ "$store" = local ] && echo 18085 || echo 18086)
        RUST_LOG=warn "$bin/gateway" --config "$work/$store.yaml" --access-log off --request-id off --metrics off \
            --proxy-listen 127.0.0.1:$p --admin-listen 127.0.0.1:$((p + 10)) 2>"$work/gateway-$store.log" &
        pids+=($!)
        port[gw-$store]=$p
        proc[gw-$store]=$!
        wait_port "$p"
        targets+=("gw-$store")
    done
fi

tick=$(getconf CLK_TCK)

# CPU clock ticks used so far by a process and its direct children (nginx's workers).
cpu_ticks() {
    local total=0 pid
    for pid in "$1" $(pgrep -P "$1" || true); do
        if [ -r "/proc/$pid/stat" ]; then
            total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
        fi
    done
    echo "$total"
}

# wrk latency value (e.g. 215.00us, 1.23ms, 1.01s) in microseconds.
to_us() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000;
        else if (v ~ /s$/) print n * 1000000; else print n }'
}

for t in "${targets[@]}"; do
    curl -fsS "http://127.0.0.1:${port[$t]}$PATH_UNDER_TEST" >/dev/null || { echo "error: $t does not answer" >&2; exit 1; }
    wrk -t"$THREADS" -c"$CONNS" -d2s "http://127.0.0.1:${port[$t]}$PATH_UNDER_TEST" >/dev/null
done

for round in $(seq 1 "$ROUNDS"); do
    # Rotate the order every round so that no target always runs first or last.
    order=()
    for i in "${!targets[@]}"; do order+=("${targets[$(((i + round - 1) % ${#targets[@]}))]}"); done
    for t in "${order[@]}"; do
        before=$(cpu_ticks "${proc[$t]}")
        out=$(wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:${port[$t]}$PATH_UNDER_TEST")
        after=$(cpu_ticks "${proc[$t]}")
        rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
        requests=$(awk '/requests in/ {print $1}' <<<"$out")
        errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out")
        p50=$(to_us "$(awk '$1 == "50%" {print $2}' <<<"$out")")
        p99=$(to_us "$(awk '$1 == "99%" {print $2}' <<<"$out")")
        echo "$t $rps $p50 $p99 $((after - before)) $requests" >>"$work/results"
        printf 'round %d %-10s %10.0f req/s  p50 %6.0f us  p99 %6.0f us %s\n' "$round" "$t" "$rps" "$p50" "$p99" "$errors" >&2
    done
done

echo
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ *//')"
echo "load: wrk -t$THREADS -c$CONNS, $ROUNDS interleaved rounds of ${DURATION}s, GET $PATH_UNDER_TEST, 13-byte response"
echo
awk -v tick="$tick" -v names="${targets[*]}" '
    function median(list, n,    i, j, tmp, a) {
        split(list, a, " ")
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { tmp = a[i]; a[i] = a[j]; a[j] = tmp }
        return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    {
        rps[$1] = rps[$1] " " $2; p50[$1] = p50[$1] " " $3; p99[$1] = p99[$1] " " $4
        ticks[$1] += $5; reqs[$1] += $6; n[$1]++
    }
    END {
        printf "| %-10s | %10s | %8s | %8s | %12s |\n", "target", "req/s", "p50 (us)", "p99 (us)", "CPU us/req"
        printf "|------------|------------|----------|----------|--------------|\n"
        count = split(names, order, " ")
        for (k = 1; k <= count; k++) {
            t = order[k]
            r[t] = median(rps[t], n[t])
            cpu = ticks[t] * 1000000 / tick / reqs[t]
            printf "| %-10s | %10.0f | %8.0f | %8.0f | %12.1f |\n", t, r[t], median(p50[t], n[t]), median(p99[t], n[t]), cpu
        }
        printf "\ngateway / nginx:      %.2fx requests/s\n", r["gateway"] / r["nginx"]
        printf "gateway / bare-hyper: %.2fx requests/s\n", r["gateway"] / r["bare-hyper"]
        if ("gw-redis" in r) {
            printf "rate-limited, local store / gateway:  %.2fx requests/s\n", r["gw-local"] / r["gateway"]
            printf "rate-limited, redis store / local:    %.2fx requests/s\n", r["gw-redis"] / r["gw-local"]
        }
    }' "$work/results"
