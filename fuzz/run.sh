#!/usr/bin/env bash
# Builds the libFuzzer targets in build-fuzz/ with clang (coverage, ASan
# and UBSan), then runs each for SECONDS (default 20) from its seed corpus.
#   fuzz/run.sh [SECONDS] [TARGET...]     (targets: all by default)
# New inputs go to build-fuzz/corpus/<target>/ (the committed seeds in
# fuzz/corpus/ stay as they are), a failing input to
# build-fuzz/artifacts/<target>/, each run's output to build-fuzz/logs/.
# Any crash, sanitizer report, leak, timeout (5 s) or memory blow-up
# (2 GiB) fails the run. Prints the executions of every target.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
secs=${1:-20}
[ $# -gt 0 ] && shift
case $secs in ''|*[!0-9]*) echo "usage: $0 [SECONDS] [TARGET...]" >&2
                           exit 2 ;; esac

all=(validate jwt bearer form router cfg netaddr webauthn)
declare -A max_len=([validate]=4096 [jwt]=4096 [bearer]=1024 [form]=4096
                    [router]=512 [cfg]=8192 [netaddr]=2048
                    [webauthn]=4096)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")
for t in "${targets[@]}"; do
    [ -n "${max_len[$t]:-}" ] || { echo "unknown target: $t" >&2; exit 2; }
done

# What the build needs, plus clang and its libFuzzer runtime.
bash config/deps.sh build || exit 1
missing=()
for p in clang libclang-rt-14-dev; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
        missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq >&2 &&
        $sudo apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >&2 || exit 1
fi

out=build-fuzz
jobs=$(nproc 2>/dev/null || echo 2)
[ "$jobs" -gt 2 ] && jobs=2
conf_log=$(mktemp)
cmake -S . -B "$out" -DCMAKE_C_COMPILER=clang -DAUTH_FUZZ=ON -DAUTH_WERROR=ON \
    -DAUTH_TESTS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    >"$conf_log" 2>&1 || { cat "$conf_log"; rm -f "$conf_log"; exit 1; }
rm -f "$conf_log"
cmake --build "$out" -j"$jobs" --target fuzz >"$out/build.log" 2>&1 ||
    { grep -E 'error|warning' "$out/build.log" || tail -30 "$out/build.log"
      exit 1; }

mkdir -p "$out/tmp" "$out/logs"
export TMPDIR=$root/$out/tmp
export ASAN_OPTIONS=detect_leaks=1:strict_string_checks=1:abort_on_error=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

failed=()
printf '%-10s %12s %8s %10s %8s  %s\n' target execs seconds execs/s \
    corpus result
for t in "${targets[@]}"; do
    bin=$out/fuzz/fuzz_$t
    work=$out/corpus/$t
    art=$out/artifacts/$t
    log=$out/logs/$t.log
    dict=()
    [ -f "fuzz/dict/$t.dict" ] && dict=(-dict="fuzz/dict/$t.dict")
    mkdir -p "$work" "$art"
    start=$(date +%s)
    "$bin" -max_total_time="$secs" -max_len="${max_len[$t]}" -timeout=5 \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$art/" \
        "${dict[@]}" "$work" "fuzz/corpus/$t" >"$log" 2>&1
    rc=$?
    took=$(( $(date +%s) - start ))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" |
            tail -1)
    execs=${execs:-0}
    result=ok
    if [ $rc -ne 0 ] || grep -qE '^(==[0-9]+==ERROR|SUMMARY: )' "$log"; then
        result="FAILED (exit $rc)"
        failed+=("$t")
    fi
    printf '%-10s %12s %8s %10s %8s  %s\n' "$t" "$execs" "$took" \
        $(( execs / (took > 0 ? took : 1) )) \
        "$(find "$work" -type f | wc -l)" "$result"
    if [ "$result" != ok ]; then
        grep -E -A30 '^(==[0-9]+==ERROR|SUMMARY: |.*runtime error)' "$log" |
            head -60
        echo "input: $(ls -t "$art" | head -1 | sed "s|^|$art/|")"
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]}"
    exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${secs} s each, no crash"
