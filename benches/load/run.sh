#!/usr/bin/env bash
# Load benchmark: nginx, a bare hyper proxy and tower-gateway (proxy only, default settings,
# and the seed's three gateways as configurations of it) in front of the same upstream, loaded
# by wrk in interleaved rounds on this machine's loopback. Prints the seed's table.
#
#   benches/load/run.sh                        # 5 rounds of 10 s per target
#   ROUNDS=3 DURATION=5 benches/load/run.sh
#   TARGETS="nginx gateway gateway-ws" benches/load/run.sh   # some of the targets
#   STORES=1 benches/load/run.sh               # also: a Kong rate-limiting plugin counted
#                                              # locally, and through Redis
#
# Targets (TARGETS, default all but the store ones):
#   nginx             nginx proxy only (no access log)
#   nginx-log         nginx + limit_req + access_log: the seed's OpenResty row without Lua
#   bare-hyper        the least a hyper proxy does (hyper-util pooled client)
#   gateway           tower-gateway, proxy only (--access-log off --request-id off --metrics off)
#   gateway-ws        the same on the work-stealing runtime (--runtime work-stealing)
#   gateway-defaults  tower-gateway with its default settings (access log, request ids, metrics)
#   kong              the seed's kong.yml (key-auth, rate-limiting, prometheus, access log)
#   openresty         the seed's OpenResty gateway (JWT HS256, leaky bucket per IP, access log)
#   go                the seed's Go gateway (token bucket, circuit breaker, round-robin over 3)
#
# Per target: requests/s, p50 and p99 latency (medians over the rounds), the ratio to nginx
# (median of per-round ratios), CPU time per request of the proxy process (all its threads;
# nginx: master and workers) and its resident memory after the last round. Everything targets
# 127.0.0.1 and stops by itself.
set -euo pipefail

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10}
THREADS=${THREADS:-2}
CONNS=${CONNS:-100}
PATH_UNDER_TEST=${PATH_UNDER_TEST:-/api/users}
TARGETS=${TARGETS:-nginx nginx-log bare-hyper gateway gateway-ws gateway-defaults kong openresty go}
STORES=${STORES:-0}

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# A work folder ($work) and the processes started ($pids), both gone on exit.
. "$here/../common.sh"
need wrk wrk
need nginx nginx-light
need openssl openssl
[ "$STORES" = 1 ] && need redis-server redis-server
[ -x /usr/sbin/nginx ] && PATH="$PATH:/usr/sbin"
read -r -a targets <<<"$TARGETS"
[ "$STORES" = 1 ] && targets+=(gw-local gw-redis)

echo "building (release)…" >&2
features="--features program"
[ "$STORES" = 1 ] && features="--features program,redis"
(cd "$root" && cargo build --release --quiet $features --example gateway --example load-upstream --example load-bare-proxy)
bin="$root/target/release/examples"

# One upstream process (one thread) for every target: the Go gateway's round-robin over three
# targets reaches the same process on three ports, so every row has the same upstream work.
"$bin/load-upstream" 127.0.0.1:18080 127.0.0.1:18087 127.0.0.1:18088 2>"$work/upstream.log" &
pids+=($!)
for p in 18080 18087 18088; do wait_port "$p"; done

declare -A port proc header

# gateway NAME PORT CONFIG [FLAGS…]: tower-gateway on PORT (its admin API on PORT + 1000).
gateway() {
    local name=$1 p=$2 config=$3
    shift 3
    RUST_LOG=warn "$bin/gateway" --config "$config" "$@" \
        --proxy-listen "127.0.0.1:$p" --admin-listen "127.0.0.1:$((p + 1000))" \
        2>"$work/$name.log" &
    pids+=($!)
    port[$name]=$p
    proc[$name]=$!
    wait_port "$p"
}

# nginx NAME PORT CONF
nginx_target() {
    mkdir -p "$work/$1/logs"
    cp "$here/$3" "$work/$1/nginx.conf"
    nginx -p "$work/$1" -c "$work/$1/nginx.conf" -e stderr 2>"$work/$1.log" &
    pids+=($!)
    port[$1]=$2
    proc[$1]=$!
    wait_port "$2"
}

# An HS256 token for the OpenResty configuration's consumer (iss = its key).
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
jwt_token() {
    local head body
    head=$(printf '{"alg":"HS256","typ":"JWT"}' | b64url)
    body=$(printf '{"iss":"seed-issuer","user_id":"42"}' | b64url)
    printf '%s.%s.%s' "$head" "$body" \
        "$(printf '%s.%s' "$head" "$body" | openssl dgst -sha256 -hmac your-secret-key -binary | b64url)"
}

off=(--access-log off --request-id off --metrics off)
for t in "${targets[@]}"; do
    case $t in
        nginx) nginx_target nginx 18081 nginx.conf ;;
        nginx-log) nginx_target nginx-log 18091 nginx-log.conf ;;
        bare-hyper)
            "$bin/load-bare-proxy" 127.0.0.1:18082 127.0.0.1:18080 2>"$work/bare.log" &
            pids+=($!)
            port[$t]=18082
            proc[$t]=$!
            wait_port 18082
            ;;
        gateway) gateway "$t" 18083 "$here/gateway.yaml" "${off[@]}" ;;
        gateway-ws) gateway "$t" 18084 "$here/gateway.yaml" "${off[@]}" --runtime work-stealing ;;
        # The access log goes to stderr, a file here, as nginx's goes to its file.
        gateway-defaults) gateway "$t" 18085 "$here/gateway.yaml" ;;
        kong)
            gateway "$t" 18086 "$here/seed-kong.yaml"
            header[$t]="apikey: test-api-key"
            ;;
        openresty)
            gateway "$t" 18089 "$here/seed-openresty.yaml"
            header[$t]="Authorization: Bearer $(jwt_token)"
            ;;
        go) gateway "$t" 18090 "$here/seed-go.yaml" ;;
        gw-local | gw-redis)
            [ -n "${redis_started:-}" ] || {
                redis-server --port 18079 --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
                pids+=($!)
                wait_port 18079
                redis_started=1
            }
            # The proxy-only route with Kong's rate-limiting plugin: a limit never reached, so
            # that every request pays the counting; one client address, so one key.
            store=${t#gw-}
            cp "$here/gateway.yaml" "$work/$store.yaml"
            cat >>"$work/$store.yaml" <<YAML
    plugins:
      - name: rate-limiting
        config:
          second: 1000000000
          policy: $store
YAML
            [ "$store" = redis ] && printf '          redis:\n            host: 127.0.0.1\n            port: 18079\n' >>"$work/$store.yaml"
            gateway "$t" "$([ "$store" = local ] && echo 18097 || echo 18098)" "$work/$store.yaml" "${off[@]}"
            ;;
        *) echo "error: unknown target $t" >&2; exit 2 ;;
    esac
done

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

load() {
    local t=$1
    shift
    if [ -n "${header[$t]:-}" ]; then
        wrk -H "${header[$t]}" "$@" "http://127.0.0.1:${port[$t]}$PATH_UNDER_TEST"
    else
        wrk "$@" "http://127.0.0.1:${port[$t]}$PATH_UNDER_TEST"
    fi
}

for t in "${targets[@]}"; do
    h=()
    [ -n "${header[$t]:-}" ] && h=(-H "${header[$t]}")
    status=$(curl -sS -o /dev/null -w '%{http_code}' "${h[@]}" "http://127.0.0.1:${port[$t]}$PATH_UNDER_TEST")
    [ "$status" = 200 ] || { echo "error: $t answers $status" >&2; cat "$work/$t.log" >&2 || true; exit 1; }
    load "$t" -t"$THREADS" -c"$CONNS" -d2s >/dev/null
done

for round in $(seq 1 "$ROUNDS"); do
    # Rotate the order every round so that no target always runs first or last.
    order=()
    for i in "${!targets[@]}"; do order+=("${targets[$(((i + round - 1) % ${#targets[@]}))]}"); done
    for t in "${order[@]}"; do
        before=$(cpu_ticks "${proc[$t]}")
        out=$(load "$t" -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency)
        after=$(cpu_ticks "${proc[$t]}")
        rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
        requests=$(awk '/requests in/ {print $1}' <<<"$out")
        errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out")
        p50=$(to_us "$(awk '$1 == "50%" {print $2}' <<<"$out")")
        p99=$(to_us "$(awk '$1 == "99%" {print $2}' <<<"$out")")
        echo "$round $t $rps $p50 $p99 $((after - before)) $requests $(rss_kib "${proc[$t]}")" >>"$work/results"
        printf 'round %d %-16s %10.0f req/s  p50 %6.0f us  p99 %6.0f us %s\n' "$round" "$t" "$rps" "$p50" "$p99" "$errors" >&2
    done
done

echo
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ *//')"
echo "load: wrk -t$THREADS -c$CONNS, $ROUNDS interleaved rounds of ${DURATION}s, GET $PATH_UNDER_TEST, 13-byte response"
echo
awk -v tick="$tick" -v names="${targets[*]}" '
    function median(list,    i, j, tmp, a, n) {
        n = split(list, a, " ")
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { tmp = a[i]; a[i] = a[j]; a[j] = tmp }
        return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    {
        round = $1; t = $2
        rps[t] = rps[t] " " $3; p50[t] = p50[t] " " $4; p99[t] = p99[t] " " $5
        ticks[t] += $6; reqs[t] += $7; rss[t] = $8
        by_round[round, t] = $3; rounds[round] = 1
    }
    END {
        printf "| %-16s | %9s | %6s | %14s | %8s | %8s | %10s | %8s |\n", "target", "req/s", "× nginx", "(range)", "p50 µs", "p99 µs", "CPU µs/req", "RSS MiB"
        printf "|------------------|-----------|--------|----------------|----------|----------|------------|----------|\n"
        count = split(names, order, " ")
        for (k = 1; k <= count; k++) {
            t = order[k]
            ratios = ""; lo = ""; hi = ""
            for (r in rounds) if ((r, "nginx") in by_round && by_round[r, "nginx"] > 0) {
                x = by_round[r, t] / by_round[r, "nginx"]
                ratios = ratios " " x
                if (lo == "" || x < lo) lo = x
                if (hi == "" || x > hi) hi = x
            }
            ratio = (ratios == "") ? "-" : sprintf("%.2f", median(ratios))
            range = (ratios == "") ? "" : sprintf("%.2f–%.2f", lo, hi)
            printf "| %-16s | %9.0f | %6s | %14s | %8.0f | %8.0f | %10.1f | %8.1f |\n", t, median(rps[t]), ratio, range, median(p50[t]), median(p99[t]), ticks[t] * 1000000 / tick / reqs[t], rss[t] / 1024
        }
        # Seed configurations against the nginx row closest to the seed OpenResty.
        for (k = 1; k <= count; k++) {
            t = order[k]
            if (t != "kong" && t != "openresty" && t != "go" && t != "gateway-defaults") continue
            ratios = ""
            for (r in rounds) if ((r, "nginx-log") in by_round && by_round[r, "nginx-log"] > 0) ratios = ratios " " by_round[r, t] / by_round[r, "nginx-log"]
            if (ratios != "") printf "%s / nginx-log: %.2fx requests/s\n", t, median(ratios)
        }
    }' "$work/results"
