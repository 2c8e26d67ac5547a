#!/usr/bin/env bash
# Fuzz every loader (CSV, .npy, model file, checkpoint) with cargo-fuzz / libFuzzer for a bounded
# time. Not part of CI: run it by hand, e.g. before a release or after touching a loader.
#
#   scripts/fuzz.sh                    every target, 60 s each
#   scripts/fuzz.sh -t 300 npy csv     only these targets, 300 s each
#   FUZZ_TIME=120 scripts/fuzz.sh      same as -t 120
#   FUZZ_JOBS=2 scripts/fuzz.sh        libFuzzer workers per target (default 1)
#   FUZZ_SANITIZER=none scripts/fuzz.sh   if the address sanitizer does not build here
#
# Needs cargo-fuzz (installed with `cargo install cargo-fuzz --locked` if missing) and a nightly
# compiler; without one the stable compiler is used with RUSTC_BOOTSTRAP=1.
#
# Seeds are read from fuzz/corpus/<target>/ (committed, never written to); the corpus a run
# grows goes to fuzz/target/corpus/<target>/ (ignored by git), crashes to
# fuzz/artifacts/<target>/. A crash makes the script exit 1 after all targets ran. Minimise one
# with `RUSTC_BOOTSTRAP=1 cargo fuzz tmin <target> <artifact>`, then keep it as a regression
# (fuzz/regressions/<target>/, replayed by `cargo test --manifest-path fuzz/Cargo.toml --lib`).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)

TIME=${FUZZ_TIME:-60}
JOBS=${FUZZ_JOBS:-1}
SANITIZER=${FUZZ_SANITIZER:-address}
MAX_LEN=${FUZZ_MAX_LEN:-8192}
RSS_MB=${FUZZ_RSS_LIMIT_MB:-2048}

while getopts "t:j:s:h" opt; do
    case $opt in
        t) TIME=$OPTARG ;;
        j) JOBS=$OPTARG ;;
        s) SANITIZER=$OPTARG ;;
        h) sed -n '2,20p' "$0"; exit 0 ;;
        *) exit 2 ;;
    esac
done
shift $((OPTIND - 1))

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

# libFuzzer needs nightly flags (-Zsanitizer, sancov passes).
TOOLCHAIN=()
if rustup run nightly rustc --version >/dev/null 2>&1; then
    TOOLCHAIN=(+nightly)
else
    export RUSTC_BOOTSTRAP=1
fi

ALL=$(cd fuzz && cargo "${TOOLCHAIN[@]}" fuzz list)
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
    mapfile -t TARGETS <<<"$ALL"
fi

echo "fuzz.sh: ${#TARGETS[@]} target(s), ${TIME} s each, sanitizer ${SANITIZER}" >&2
(cd fuzz && cargo "${TOOLCHAIN[@]}" fuzz build --sanitizer "$SANITIZER")

failed=()
summary=()
for t in "${TARGETS[@]}"; do
    if ! grep -qx "$t" <<<"$ALL"; then
        echo "fuzz.sh: unknown target '$t' (known: $(echo $ALL))" >&2
        exit 2
    fi
    work="$ROOT/fuzz/target/corpus/$t"
    mkdir -p "$work" "$ROOT/fuzz/artifacts/$t"
    log="$ROOT/fuzz/target/fuzz-$t.log"
    echo "== $t: ${TIME} s (log: $log)" >&2
    set +e
    (cd fuzz && cargo "${TOOLCHAIN[@]}" fuzz run --sanitizer "$SANITIZER" --jobs "$JOBS" "$t" \
        "$work" "$ROOT/fuzz/corpus/$t" -- \
        -max_total_time="$TIME" -max_len="$MAX_LEN" -rss_limit_mb="$RSS_MB" \
        -timeout=10 -print_final_stats=1) >"$log" 2>&1
    rc=$?
    set -e
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | awk '{s+=$2} END {print s+0}')
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | awk '{print $2}')
    if [ $rc -ne 0 ]; then
        failed+=("$t")
        summary+=("$t: CRASH after ${runs} runs (exit $rc) - see $log and fuzz/artifacts/$t/")
        grep -m3 -E "panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer|out-of-memory|deadly signal" "$log" >&2 || true
    else
        summary+=("$t: ok, ${runs} runs in ${TIME} s, coverage ${cov:-?}")
    fi
done

echo >&2
printf '%s\n' "${summary[@]}" >&2
if [ ${#failed[@]} -ne 0 ]; then
    echo "fuzz.sh: crashes in: ${failed[*]}" >&2
    exit 1
fi
