#!/usr/bin/env bash
# Fuzz every loader (CSV, .npy, model file, checkpoint) with cargo-fuzz / libFuzzer for a bounded
# time. Not part of CI: run it by hand, e.g. before a release or after touching a loader.
#
#   scripts/fuzz.sh                    every target, 60 s each
#   scripts/fuzz.sh -t 300 npy csv     only these targets, 300 s each
#   FUZZ_TIME=120 scripts/fuzz.sh      same as -t 120
#   FUZZ_JOBS=2 scripts/fuzz.sh        parallel libFuzzer jobs per target (default 1)
#   FUZZ_SANITIZER=none scripts/fuzz.sh   if the address sanitizer does not build here
#   FUZZ_MALLOC_LIMIT_MB=5000 scripts/fuzz.sh npy   allow single allocations up to 5 GB (default:
#                                         the 2 GB RSS limit; a bigger one is reported as oom-*)
#   FUZZ_STOP_ON_CRASH=1 scripts/fuzz.sh  stop a target at its first crash (default: libFuzzer's
#                                         fork mode keeps going and collects every crash)
#
# Needs cargo-fuzz (installed with `cargo install cargo-fuzz --locked` if missing) and a nightly
# compiler; without one the stable compiler is used with RUSTC_BOOTSTRAP=1.
#
# Seeds are read from fuzz/corpus/<target>/ (committed, never written to); the corpus a run
# grows goes to fuzz/target/corpus/<target>/ (ignored by git), crashes to
# fuzz/artifacts/<target>/ (crash-*, oom-*, timeout-*). Any new artifact makes the script exit 1
# after all targets ran. Minimise one
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
MALLOC_MB=${FUZZ_MALLOC_LIMIT_MB:-$RSS_MB}
STOP_ON_CRASH=${FUZZ_STOP_ON_CRASH:-0}

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
    artifacts="$ROOT/fuzz/artifacts/$t"
    mkdir -p "$work" "$artifacts"
    log="$ROOT/fuzz/target/fuzz-$t.log"
    stamp="$ROOT/fuzz/target/.stamp-$t"
    touch "$stamp"
    sleep 1
    if [ "$STOP_ON_CRASH" = 1 ]; then
        mode=(-runs=-1)
        [ "$JOBS" -gt 1 ] && mode=(-jobs="$JOBS" -workers="$JOBS")
    else
        mode=(-fork="$JOBS" -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1)
    fi
    echo "== $t: ${TIME} s (log: $log)" >&2
    set +e
    (cd fuzz && cargo "${TOOLCHAIN[@]}" fuzz run --sanitizer "$SANITIZER" "$t" \
        "$work" "$ROOT/fuzz/corpus/$t" -- "${mode[@]}" \
        -max_total_time="$TIME" -max_len="$MAX_LEN" -rss_limit_mb="$RSS_MB" -malloc_limit_mb="$MALLOC_MB" \
        -timeout=10 -print_final_stats=1) >"$log" 2>&1
    rc=$?
    set -e
    # Runs: the last status line (`#N: ...` in fork mode, `#N DONE ...` otherwise).
    runs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | awk '{print $2}')
    mapfile -t found < <(find "$artifacts" -type f -newer "$stamp" | sort)
    if [ ${#found[@]} -ne 0 ] || [ $rc -ne 0 ]; then
        failed+=("$t")
        summary+=("$t: ${#found[@]} finding(s) in ${runs:-?} runs (exit $rc): ${found[*]:-see $log}")
        grep -m3 -E "panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer|out-of-memory" "$log" >&2 || true
    else
        summary+=("$t: ok, ${runs:-?} runs in ${TIME} s, coverage ${cov:-?}")
    fi
done

echo >&2
printf '%s\n' "${summary[@]}" >&2
if [ ${#failed[@]} -ne 0 ]; then
    echo "fuzz.sh: crashes in: ${failed[*]}" >&2
    exit 1
fi
