#!/usr/bin/env bash
# End-to-end comparison of our indexer with its peers on one generated channel.
#
# Usage (from any directory):
#   benches/compare.sh                              # 2,286 packages of ~90 KB, ~2 min
#   PACKAGES=300 RUNS=2 benches/compare.sh          # quick check
#   WORKLOAD=big benches/compare.sh                 # 20 packages of 100-200 MB, ~15 min
#   WORKLOAD=100k benches/compare.sh                # 100,000 tiny packages, ~5 min
#   WORKLOAD=1m benches/compare.sh                  # 1,000,000 tiny packages, ~1 h with rattler-index
#
# Workloads (WORKLOAD, each a set of defaults for the variables below):
#   small  2286 packages, --payload-bytes 150000 (~90 KB files), 4 subdirs, RUNS=3
#   big    20 packages, --sizes 100M-200M, subdirs linux-64 noarch, RUNS=2,
#          TOOLS="ours rattler" (conda-index takes over 5 min per cold run here)
#   100k   100000 packages, --sizes tiny, 4 subdirs, RUNS=3, TOOLS="ours rattler"
#          (conda-index takes ~5 min cold here; add it with TOOLS)
#   1m     1,000,000 packages, --sizes tiny, 600,000 linux-64 + 400,000 noarch
#          (the generator deals subdirs round-robin), RUNS=1,
#          TOOLS="ours rattler" (issue 15's conda-forge scale)
#
# Environment (defaults for WORKLOAD=small in brackets):
#   PACKAGES         packages in the channel                      [2286]
#   PAYLOAD_BYTES    mean payload per package (~61% on disk)      [150000]
#   SIZES            generate --sizes: uniform (around PAYLOAD_BYTES),
#                    realistic, tiny, or a file size range MIN-MAX [uniform]
#   SUBDIRS          subdirs, space separated        [noarch linux-64 osx-64 win-64]
#   CONDA_FRACTION   share of .conda packages                     [0.5]
#   SEED             generator seed                               [0]
#   RUNS             timed runs per measurement                   [3]
#   TOOLS            which of: ours rattler conda_index  [all three]
#   OURS_FLAGS       extra flags for our index, e.g. --write-shards (the
#                    cost of CEP 16 shards)                        [none]
#   WORK             scratch dir (remade)  [target/bench-compare, -big, -100k]
#   REUSE            set to keep WORK/channel when it was made with the same
#                    parameters (the big channel takes minutes to generate)
#   MAX_PARALLEL     rattler-index --max-parallel                 [nproc]
#   RATTLER_INDEX    rattler-index binary    [rattler-index on PATH or ~/.cargo/bin]
#   CONDA_INDEX      conda-index oracle script [../shared/tools/conda-index-oracle/conda-index]
#   NO_HYPERFINE     set to time with bash `time` even if hyperfine exists
#   ORACLE_VENV      venv with conda-index 0.13.0; made with the oracle's
#                    setup.sh under target/oracle-venv when unset
#
# What it does: builds ours in release, generates ONE channel, hard-links it
# once per tool (every tool reads the very same files), checks that our repodata.json is byte-identical to conda-index's
# for every subdir, then times for each tool a COLD index (its caches and
# outputs deleted before every run) and a NO-CHANGE re-run, with hyperfine
# (installed with apt when missing and root) or, failing that, bash `time`
# and the median of RUNS runs. Peak RSS comes from one cold run under
# /usr/bin/time -v (largest single process) and from sampling the whole
# process tree (conda-index reads packages in worker processes). A peer that
# is not installed is skipped.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"

WORKLOAD=${WORKLOAD:-small}
case $WORKLOAD in
    small) ;;
    big)
        PACKAGES=${PACKAGES:-20} SIZES=${SIZES:-100M-200M}
        SUBDIRS=${SUBDIRS:-linux-64 noarch} RUNS=${RUNS:-2} TOOLS=${TOOLS:-ours rattler}
        WORK=${WORK:-$root/target/bench-compare-big} ;;
    100k)
        PACKAGES=${PACKAGES:-100000} SIZES=${SIZES:-tiny} TOOLS=${TOOLS:-ours rattler}
        WORK=${WORK:-$root/target/bench-compare-100k} ;;
    1m)
        PACKAGES=${PACKAGES:-1000000} SIZES=${SIZES:-tiny} RUNS=${RUNS:-1}
        SUBDIRS=${SUBDIRS:-linux-64 linux-64 linux-64 noarch noarch}
        TOOLS=${TOOLS:-ours rattler}
        WORK=${WORK:-$root/target/bench-compare-1m} ;;
    *) echo "WORKLOAD must be small, big, 100k or 1m" >&2; exit 2 ;;
esac
PACKAGES=${PACKAGES:-2286}
PAYLOAD_BYTES=${PAYLOAD_BYTES:-150000}
SIZES=${SIZES:-uniform}
SUBDIRS=${SUBDIRS:-noarch linux-64 osx-64 win-64}
CONDA_FRACTION=${CONDA_FRACTION:-0.5}
SEED=${SEED:-0}
RUNS=${RUNS:-3}
TOOLS=${TOOLS:-ours rattler conda_index}
WORK=${WORK:-$root/target/bench-compare}
MAX_PARALLEL=${MAX_PARALLEL:-$(nproc)}
if [ -z "${RATTLER_INDEX:-}" ]; then
    RATTLER_INDEX=$(command -v rattler-index || echo "$HOME/.cargo/bin/rattler-index")
fi
CONDA_INDEX=${CONDA_INDEX:-$root/../shared/tools/conda-index-oracle/conda-index}

say() { printf '\n== %s\n' "$*"; }

# ---------------------------------------------------------------- tools
say "building ours (release)"
cargo build --release --quiet
OURS=$root/target/release/artifact-upload-handler

if ! command -v hyperfine >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing hyperfine and time with apt"
    { apt-get update -qq && apt-get install -y -qq hyperfine time; } >/dev/null 2>&1 || true
fi
HAVE_HYPERFINE=0; command -v hyperfine >/dev/null && HAVE_HYPERFINE=1
[ -n "${NO_HYPERFINE:-}" ] && HAVE_HYPERFINE=0
HAVE_GNU_TIME=0; [ -x /usr/bin/time ] && /usr/bin/time -v true >/dev/null 2>&1 && HAVE_GNU_TIME=1

have_rattler=0; [ -x "$RATTLER_INDEX" ] && have_rattler=1
have_conda_index=0
if [ -x "$CONDA_INDEX" ]; then
    if [ -z "${ORACLE_VENV:-}" ]; then
        export ORACLE_VENV=$root/target/oracle-venv
    else
        export ORACLE_VENV
    fi
    if ! "$ORACLE_VENV/bin/python" -c 'import conda_index' >/dev/null 2>&1; then
        say "setting up the conda-index oracle venv in $ORACLE_VENV"
        "$(dirname "$CONDA_INDEX")/setup.sh" >/dev/null || true
    fi
    "$ORACLE_VENV/bin/python" -c 'import conda_index' >/dev/null 2>&1 && have_conda_index=1
fi

# ---------------------------------------------------------------- channel
say "generating $PACKAGES packages (sizes $SIZES, payload $PAYLOAD_BYTES B, subdirs: $SUBDIRS, seed $SEED)"
params="$PACKAGES $PAYLOAD_BYTES $SIZES $SUBDIRS $CONDA_FRACTION $SEED"
if [ -n "${REUSE:-}" ] && [ "$(cat "$WORK/channel.params" 2>/dev/null)" = "$params" ]; then
    echo "reusing $WORK/channel"
    rm -rf "$WORK/ours" "$WORK/rattler" "$WORK/conda_index"
else
    rm -rf "$WORK"
    mkdir -p "$WORK"
    subdir_args=()
    for s in $SUBDIRS; do subdir_args+=(--subdir "$s"); done
    "$OURS" generate "$WORK/channel" --packages "$PACKAGES" --payload-bytes "$PAYLOAD_BYTES" \
        --sizes "$SIZES" "${subdir_args[@]}" --conda-fraction "$CONDA_FRACTION" --seed "$SEED"
    echo "$params" >"$WORK/channel.params"
fi
echo "channel size: $(du -sh "$WORK/channel" | cut -f1)"
# Hard links: every tool reads the same files (and the same cached pages);
# none of them writes into a package.
for tool in ours rattler conda_index; do
    cp -al "$WORK/channel" "$WORK/$tool"
done
printf '[index-config]\nwrite-zst = false\nwrite-shards = false\n' >"$WORK/plain.toml"

# Per tool: the index command and the command deleting its caches and outputs.
# Every path is quoted for sh, the shell hyperfine runs them with.
q() { printf '%q' "$1"; }
D_OURS=$(q "$WORK/ours")
D_RATTLER=$(q "$WORK/rattler")
D_CI=$(q "$WORK/conda_index")
declare -A RUN CLEAN NAME
NAME[ours]=artifact-upload-handler
RUN[ours]="$(q "$OURS") index $D_OURS ${OURS_FLAGS:-}"
# (find, not a glob: 25,000 shard files overflow an argument list)
CLEAN[ours]="rm -f $D_OURS/*/.cache/artifact-upload-handler-* $D_OURS/*/repodata*.json* $D_OURS/*/patch_instructions.json; find $D_OURS -maxdepth 2 -name '*.msgpack.zst' -delete"
NAME[rattler]=rattler-index
RUN[rattler]="$(q "$RATTLER_INDEX") --max-parallel $MAX_PARALLEL --config $(q "$WORK/plain.toml") fs $D_RATTLER"
CLEAN[rattler]="rm -rf $D_RATTLER/*/repodata*.json* $D_RATTLER/*/repodata_shards.msgpack.zst $D_RATTLER/*/shards $D_RATTLER/.tmp"
NAME[conda_index]=conda-index
RUN[conda_index]="$(q "$CONDA_INDEX") $D_CI"
CLEAN[conda_index]="rm -rf $D_CI/*/.cache $D_CI/*/repodata*.json* $D_CI/*/index.html $D_CI/*/run_exports.json* $D_CI/index.html $D_CI/channeldata.json $D_CI/.cache"

selected() { [[ " $TOOLS " == *" $1 "* ]]; }
available() {
    [ "$1" = ours ] || selected "$1" || return 1
    case $1 in
        ours) return 0 ;;
        rattler) [ "$have_rattler" = 1 ] ;;
        conda_index) [ "$have_conda_index" = 1 ] ;;
    esac
}

declare -A COLD NOCHANGE PEAK TREE CPU STATUS
# Sum of the RSS of process $1 and all its descendants, in KiB.
tree_rss_kb() {
    ps -e -o pid=,ppid=,rss= | awk -v root="$1" '
        { parent[$1] = $2; rss[$1] = $3 }
        END {
            for (p in rss) {
                q = p
                while (q != root && q in parent && q > 1) q = parent[q]
                if (q == root) total += rss[p]
            }
            print total + 0
        }'
}

# One cold run; sets STATUS, PEAK (largest single process, from GNU time)
# and TREE (the whole process tree, sampled every 50 ms: conda-index reads
# packages in worker processes, which GNU time's maximum does not add up).
cold_once() {
    local tool=$1 log=$WORK/$1.cold.log
    sh -c "${CLEAN[$tool]}"
    local rc=0 pid peak=0 now
    if [ "$HAVE_GNU_TIME" = 1 ]; then
        /usr/bin/time -v -o "$WORK/$tool.rss" sh -c "${RUN[$tool]}" >"$log" 2>&1 &
    else
        sh -c "${RUN[$tool]}" >"$log" 2>&1 &
    fi
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        now=$(tree_rss_kb "$pid")
        [ "$now" -gt "$peak" ] && peak=$now
        sleep 0.05
    done
    wait "$pid" || rc=$?
    TREE[$tool]=$((peak / 1024))
    if [ "$HAVE_GNU_TIME" = 1 ]; then
        PEAK[$tool]=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2 / 1024}' "$WORK/$tool.rss")
        CPU[$tool]=$(awk -F': ' '/(User|System) time/ {t += $2} END {printf "%.1f", t}' "$WORK/$tool.rss")
    else
        PEAK[$tool]=n/a CPU[$tool]=n/a
    fi
    if [ "$rc" = 0 ]; then
        STATUS[$tool]=ok
    else
        STATUS[$tool]="failed (exit $rc, see $log)"
        echo "${NAME[$tool]}: cold run failed with exit $rc; last lines of $log:"
        tail -5 "$log"
    fi
}

# ---------------------------------------------------------------- check
OUTPUT_DIFF=0
say "one cold run per tool (peak RSS), then output check"
for tool in ours rattler conda_index; do
    if available "$tool"; then
        echo "${NAME[$tool]}: ${RUN[$tool]}"
        cold_once "$tool"
    else
        if selected "$tool" || [ "$tool" = ours ]; then
            STATUS[$tool]="skipped: not installed"
        else
            STATUS[$tool]="skipped: not in TOOLS"
        fi
        echo "${NAME[$tool]}: ${STATUS[$tool]}"
    fi
done

if [ "${STATUS[conda_index]}" = ok ] && [ "${STATUS[ours]}" = ok ]; then
    echo "our repodata.json vs conda-index's (byte for byte):"
    for s in $SUBDIRS; do
        if cmp -s "$WORK/ours/$s/repodata.json" "$WORK/conda_index/$s/repodata.json"; then
            echo "  $s: OK"
        else
            echo "  $s: DIFF"
            OUTPUT_DIFF=1
        fi
    done
else
    echo "our repodata.json vs conda-index's: skipped (conda-index: ${STATUS[conda_index]})"
fi
if [ "${STATUS[rattler]}" = ok ] && [ "${STATUS[ours]}" = ok ] && command -v python3 >/dev/null; then
    echo "rattler-index's repodata.json vs ours (same file names? same record fields?):"
    python3 - "$WORK/ours" "$WORK/rattler" $SUBDIRS <<'EOF'
import json, sys
ours, rattler, subdirs = sys.argv[1], sys.argv[2], sys.argv[3:]
for s in subdirs:
    a = json.load(open(f"{ours}/{s}/repodata.json"))
    b = json.load(open(f"{rattler}/{s}/repodata.json"))
    notes, added, disagree = [], set(), set()
    for sec in ("packages", "packages.conda"):
        pa, pb = a.get(sec, {}), b.get(sec, {})
        if set(pa) != set(pb):
            notes.append(f"{sec}: {len(pa)} vs {len(pb)} files")
        for k in set(pa) & set(pb):
            x, y = pa[k], pb[k]
            added |= {f for f in y if f not in x}
            disagree |= {f for f in x if x[f] != y.get(f)}
    if disagree:
        notes.append("fields that differ: " + ", ".join(sorted(disagree)))
    n = len(a.get("packages", {})) + len(a.get("packages.conda", {}))
    extra = f"; rattler-index adds: {', '.join(sorted(added))}" if added else ""
    print(f"  {s}: {'OK' if not notes else 'DIFF ' + '; '.join(notes)} ({n} packages{extra})")
EOF
fi

if [ "${STATUS[ours]}" != ok ]; then
    echo "our indexer failed on the generated channel; nothing to compare" >&2
    exit 1
fi

# ---------------------------------------------------------------- timing
# median_seconds TOOL KIND(cold|nochange) -> prints seconds
median_seconds() {
    local tool=$1 kind=$2 json=$WORK/$1.$2.json
    if [ "$HAVE_HYPERFINE" = 1 ]; then
        local args=(--runs "$RUNS" --export-json "$json" --command-name "${NAME[$tool]} $kind")
        if [ "$kind" = cold ]; then
            args+=(--warmup 0 --prepare "${CLEAN[$tool]}")
        else
            # No shell: a no-change run takes milliseconds, below what
            # hyperfine can correct shell start-up for.
            args+=(--warmup 1 -N)
        fi
        hyperfine "${args[@]}" "${RUN[$tool]}" >&2
        sed -n 's/.*"median": *\([0-9.eE+-]*\).*/\1/p' "$json" | head -1
    else
        local times=() i
        for ((i = 0; i < RUNS; i++)); do
            [ "$kind" = cold ] && sh -c "${CLEAN[$tool]}"
            local TIMEFORMAT=%R
            times+=("$({ time sh -c "${RUN[$tool]}" >/dev/null 2>&1; } 2>&1)")
        done
        printf '%s\n' "${times[@]}" | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'
    fi
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for tool in ours rattler conda_index; do
    [ "${STATUS[$tool]}" = ok ] || continue
    say "${NAME[$tool]}: cold ($RUNS runs)"
    COLD[$tool]=$(median_seconds "$tool" cold)
    say "${NAME[$tool]}: no change ($RUNS runs)"
    NOCHANGE[$tool]=$(median_seconds "$tool" nochange)
done

# Our no-change run must open no package: its summary counts the packages
# it read.
NOCHANGE_READ=$("$OURS" index "$WORK/ours" ${OURS_FLAGS:-} 2>&1 | sed -n 's/.*packages in .* subdirs: \([0-9]*\) read.*/\1/p')
echo "our no-change run read ${NOCHANGE_READ:-?} packages"

# ---------------------------------------------------------------- table
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1fx", a / b; else print "n/a" }'; }
say "results: $PACKAGES packages, $(du -sh "$WORK/channel" | cut -f1), $(nproc) cores, median of $RUNS runs ($([ "$HAVE_HYPERFINE" = 1 ] && echo hyperfine || echo bash time))"
printf '%-24s %10s %13s %9s %9s %9s %12s %16s\n' tool "cold s" "no-change s" "cold CPU s" "peak MB" "tree MB" "cold ratio" "no-change ratio"
for tool in ours rattler conda_index; do
    if [ "${STATUS[$tool]}" != ok ]; then
        printf '%-24s %s\n' "${NAME[$tool]}" "${STATUS[$tool]}"
        continue
    fi
    if [ "$tool" = ours ]; then
        rc=1.0x rn=1.0x
    else
        rc=$(ratio "${COLD[$tool]}" "${COLD[ours]}")
        rn=$(ratio "${NOCHANGE[$tool]}" "${NOCHANGE[ours]}")
    fi
    printf '%-24s %10.3f %13.3f %9s %9s %9s %12s %16s\n' "${NAME[$tool]}" \
        "${COLD[$tool]}" "${NOCHANGE[$tool]}" "${CPU[$tool]}" "${PEAK[$tool]}" "${TREE[$tool]}" "$rc" "$rn"
done
echo "(load average before the timed runs: $LOAD_BEFORE; now: $(cut -d' ' -f1-3 /proc/loadavg))"
echo "(our no-change run read ${NOCHANGE_READ:-?} packages; cold CPU s: user + system time of the"
echo " /usr/bin/time run, main process and waited-for children; peak MB: largest single process of one cold run, /usr/bin/time -v; tree MB: all its processes"
echo " together, sampled every 50 ms, including the sh and time wrappers, ~3 MB;"
echo " ratios: peer time / our time, above 1 means we are faster)"
if [ "$OUTPUT_DIFF" = 1 ]; then
    echo "WARNING: our repodata.json differs from conda-index's (see DIFF above); these timings are of wrong output" >&2
    exit 1
fi
