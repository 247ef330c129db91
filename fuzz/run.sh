#!/usr/bin/env bash
# Fuzzing on the stable toolchain: builds the targets in fuzz_targets/ with libFuzzer's
# coverage instrumentation (the flags cargo-fuzz passes, without a sanitizer: the crate has no
# unsafe code) and runs each for a bounded time.
#
#   fuzz/run.sh                  # every target, 60 s each
#   fuzz/run.sh 600 gateway_bytes route_match
#
# New inputs go to fuzz/corpus/<target>/ (not committed), starting from the seeds in
# fuzz/seeds/<target>/ (taken from the tests; committed). A crash, a panic, a hang over 10 s or
# more than 2 GiB of memory stops the run with the input in fuzz/artifacts/<target>/ and a
# non-zero exit: turn it into a regression test, fix it, and add the input to the seeds.
# Everything runs on this machine; the gateway target talks to itself on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(config_yaml admin_body route_match jwt_token gateway_bytes)
fi

host=$(rustc -vV | sed -n 's/^host: //p')
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"
# --target keeps the instrumentation off build scripts and proc macros.
cargo build --release --target "$host" --bins

for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "artifacts/$target" "seeds/$target"
    echo "== fuzzing $target for ${seconds}s"
    "target/$host/release/$target" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="artifacts/$target/" "corpus/$target" "seeds/$target"
done
