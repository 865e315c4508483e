#!/usr/bin/env bash
# `index s3://` against `rattler-index s3` on the same S3 API: moto on
# loopback (tests/moto/s3_server.py, one request at a time, as the tests
# run it), one bucket, one prefix per tool holding the same generated
# packages. Times a COLD run (each tool's outputs and caches deleted first)
# and a NO-CHANGE re-run, and counts from the server's request log what
# each run cost: requests, bytes received from the store (GET bodies),
# bytes sent to it (PUT bodies).
#
#   benches/s3.sh                         # 1,000 packages of ~90 KB (~3 min)
#   PACKAGES=200 RUNS=1 benches/s3.sh     # a quick look
#
# Environment:
#   PACKAGES       packages in the channel                       [1000]
#   PAYLOAD_BYTES  mean payload per package (~61% on disk)       [150000]
#   SUBDIRS        subdirs, space separated          [noarch linux-64]
#   RUNS           timed runs per measurement (median)           [3]
#   MAX_PARALLEL   requests in flight, both tools                [16]
#   TOOLS          which of: ours rattler                        [ours rattler]
#   RATTLER_INDEX  rattler-index binary [rattler-index on PATH or ~/.cargo/bin]
#   MOTO_VENV      venv with moto[server]               [target/moto-venv]
#   WORK           scratch dir (remade)                 [target/bench-s3]
#   UPLOADS        sequential uploads timed against `serve -d s3://`   [100]
#
# Then `serve -d s3://BUCKET/ours` on the indexed prefix takes UPLOADS
# small packages one after another (the original `POST /` over HTTPS), each
# timed from sending to the 201 (which comes only once a committed
# repodata.json in the bucket lists it): median, p90, max.
#
# moto is Python serving one request at a time, so absolute times say more
# about moto than about S3; what carries over is the relative cost and the
# request and byte counts.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"

PACKAGES=${PACKAGES:-1000}
PAYLOAD_BYTES=${PAYLOAD_BYTES:-150000}
SUBDIRS=${SUBDIRS:-noarch linux-64}
RUNS=${RUNS:-3}
MAX_PARALLEL=${MAX_PARALLEL:-16}
TOOLS=${TOOLS:-ours rattler}
WORK=${WORK:-$root/target/bench-s3}
MOTO_VENV=${MOTO_VENV:-$root/target/moto-venv}
MOTO=${MOTO:-moto[server]==5.2.1}
UPLOADS=${UPLOADS:-100}
if [ -z "${RATTLER_INDEX:-}" ]; then
    RATTLER_INDEX=$(command -v rattler-index || echo "$HOME/.cargo/bin/rattler-index")
fi
BUCKET=auh-bench

say() { printf '\n== %s\n' "$*"; }

say "building ours (release)"
cargo build --release --quiet
OURS=$root/target/release/artifact-upload-handler

if ! "$MOTO_VENV/bin/python" -c 'import moto, flask, boto3' 2>/dev/null; then
    say "making $MOTO_VENV"
    python3 -m venv "$MOTO_VENV"
    "$MOTO_VENV/bin/python" -m pip install -q "$MOTO"
fi
PY=$MOTO_VENV/bin/python

rm -rf "$WORK"
mkdir -p "$WORK"
say "generating $PACKAGES packages (payload $PAYLOAD_BYTES B, subdirs: $SUBDIRS)"
subdir_args=()
for s in $SUBDIRS; do subdir_args+=(--subdir "$s"); done
"$OURS" -q generate "$WORK/channel" --packages "$PACKAGES" --payload-bytes "$PAYLOAD_BYTES" \
    "${subdir_args[@]}" --seed 0
echo "channel size: $(du -sh "$WORK/channel" | cut -f1)"

# The server, fed a stdin that stays open until this script exits.
LOG=$WORK/requests.jsonl
mkfifo "$WORK/moto.stdin"
"$PY" tests/moto/s3_server.py --log "$LOG" <"$WORK/moto.stdin" >"$WORK/moto.out" 2>"$WORK/moto.err" &
MOTO_PID=$!
exec 9>"$WORK/moto.stdin"
SERVE_PID=
trap 'exec 9>&-; kill $MOTO_PID $SERVE_PID 2>/dev/null || true' EXIT
for _ in $(seq 1200); do [ -s "$WORK/moto.out" ] && break; sleep 0.1; done
[ -s "$WORK/moto.out" ] || { echo "moto did not start; see $WORK/moto.err" >&2; exit 1; }
read -r PORT KEY SECRET < <("$PY" -c 'import json,sys; d=json.loads(open(sys.argv[1]).readline()); print(d["port"], d["writer"]["key"], d["writer"]["secret"])' "$WORK/moto.out")
ENDPOINT=http://127.0.0.1:$PORT
curl -fsS -X POST "$ENDPOINT/auh-admin/buckets/$BUCKET" >/dev/null
export AWS_ENDPOINT_URL=$ENDPOINT AWS_ACCESS_KEY_ID=$KEY AWS_SECRET_ACCESS_KEY=$SECRET
export AWS_REGION=us-east-1 AWS_ALLOW_HTTP=true

# s3 helper: upload a tree under a prefix, or delete every object under a
# prefix that is not a package (outputs and caches: a cold run).
s3() {
    "$PY" - "$@" <<'EOF'
import os, sys, boto3
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
bucket, action, prefix = sys.argv[1], sys.argv[2], sys.argv[3]
if action == "upload":
    tree = sys.argv[4]
    for base, _, files in os.walk(tree):
        for name in files:
            path = os.path.join(base, name)
            key = prefix + "/" + os.path.relpath(path, tree)
            s3.upload_file(path, bucket, key)
elif action == "clean":
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
    for page in pages:
        for obj in page.get("Contents", []):
            if not obj["Key"].endswith((".conda", ".tar.bz2")):
                s3.delete_object(Bucket=bucket, Key=obj["Key"])
EOF
}

# traffic FROM_LINE -> "requests bytes_down bytes_up" logged since that line
traffic() {
    tail -n +"$(($1 + 1))" "$LOG" | "$PY" -c '
import json, sys
n = down = up = 0
for line in sys.stdin:
    r = json.loads(line)
    if r["method"] == "POST" and "auh-admin" in r["path"]:
        continue
    n += 1
    down += r["bytes_out"] if r["method"] == "GET" else 0
    up += r["bytes_in"]
print(n, down, up)'
}
log_lines() { wc -l <"$LOG" | tr -d ' '; }

declare -A RUN NAME
NAME[ours]=artifact-upload-handler
RUN[ours]="$OURS -q index s3://$BUCKET/ours --max-parallel $MAX_PARALLEL"
NAME[rattler]=rattler-index
printf '[index-config]\nwrite-zst = false\nwrite-shards = false\n' >"$WORK/plain.toml"
RUN[rattler]="$RATTLER_INDEX -q --max-parallel $MAX_PARALLEL --config $WORK/plain.toml s3 s3://$BUCKET/rattler --endpoint-url $ENDPOINT --region us-east-1 --addressing-style path"
export S3_ACCESS_KEY_ID=$KEY S3_SECRET_ACCESS_KEY=$SECRET

selected=()
for tool in $TOOLS; do
    if [ "$tool" = rattler ] && [ ! -x "$RATTLER_INDEX" ]; then
        echo "rattler-index not found at $RATTLER_INDEX: skipped"
        continue
    fi
    selected+=("$tool")
    say "uploading the channel to s3://$BUCKET/$tool"
    s3 "$BUCKET" upload "$tool" "$WORK/channel"
done

median() { sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
declare -A COLD NOCHANGE COLD_T NOCHANGE_T
for tool in "${selected[@]}"; do
    for kind in cold nochange; do
        say "${NAME[$tool]}: $kind ($RUNS runs)"
        times=()
        for ((i = 0; i < RUNS; i++)); do
            [ "$kind" = cold ] && s3 "$BUCKET" clean "$tool"
            mark=$(log_lines)
            start=$(date +%s.%N)
            if ! ${RUN[$tool]} >"$WORK/$tool.$kind.log" 2>&1; then
                echo "${NAME[$tool]} failed; last lines of $WORK/$tool.$kind.log:"
                tail -5 "$WORK/$tool.$kind.log"
                exit 1
            fi
            end=$(date +%s.%N)
            times+=("$(awk -v a="$start" -v b="$end" 'BEGIN {print b - a}')")
            last_traffic=$(traffic "$mark")
        done
        t=$(printf '%s\n' "${times[@]}" | median)
        if [ "$kind" = cold ]; then COLD[$tool]=$t COLD_T[$tool]=$last_traffic; else NOCHANGE[$tool]=$t NOCHANGE_T[$tool]=$last_traffic; fi
        echo "median ${t}s; requests, bytes down, bytes up of the last run: $last_traffic"
    done
done

# Our repodata.json against rattler-index's: same file names, same fields?
if [ "${#selected[@]}" = 2 ]; then
    say "ours vs rattler-index's repodata.json"
    "$PY" - "$BUCKET" $SUBDIRS <<'EOF'
import json, os, sys, boto3
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
bucket, subdirs = sys.argv[1], sys.argv[2:]
for s in subdirs:
    a = json.loads(s3.get_object(Bucket=bucket, Key=f"ours/{s}/repodata.json")["Body"].read())
    b = json.loads(s3.get_object(Bucket=bucket, Key=f"rattler/{s}/repodata.json")["Body"].read())
    same = all(set(a.get(k, {})) == set(b.get(k, {})) for k in ("packages", "packages.conda"))
    n = len(a.get("packages", {})) + len(a.get("packages.conda", {}))
    print(f"  {s}: {'same file names' if same else 'DIFFERENT file names'} ({n} packages)")
EOF
fi

mb() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1e6}'; }
say "results: $PACKAGES packages ($(du -sh "$WORK/channel" | cut -f1)), moto on loopback, --max-parallel $MAX_PARALLEL, median of $RUNS runs, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-24s %8s %9s %9s %9s %12s %9s %9s %9s\n' tool "cold s" "requests" "MB down" "MB up" "no-change s" "requests" "MB down" "MB up"
for tool in "${selected[@]}"; do
    read -r cr cd cu <<<"${COLD_T[$tool]}"
    read -r nr nd nu <<<"${NOCHANGE_T[$tool]}"
    printf '%-24s %8.2f %9s %9s %9s %12.2f %9s %9s %9s\n' "${NAME[$tool]}" "${COLD[$tool]}" "$cr" "$(mb "$cd")" "$(mb "$cu")" \
        "${NOCHANGE[$tool]}" "$nr" "$(mb "$nd")" "$(mb "$nu")"
done

# upload->201 latency against the bucket, through serve.
if [ "$UPLOADS" -gt 0 ] && [[ " ${selected[*]} " == *" ours "* ]]; then
    say "serve -d s3://$BUCKET/ours: $UPLOADS sequential uploads"
    "$OURS" -q generate "$WORK/uploads" --packages "$UPLOADS" --payload-bytes 20000 \
        --subdir noarch --name-prefix upl --seed 1
    token=bench-token
    hash=$(printf '%s' "$token" | "$OURS" hash-token)
    port=$(( 20000 + RANDOM % 20000 ))
    "$OURS" serve -d "s3://$BUCKET/ours" -p "$port" --bind 127.0.0.1 -t "$hash" \
        --state-dir "$WORK/serve-state" >"$WORK/serve.log" 2>&1 &
    SERVE_PID=$!
    for _ in $(seq 600); do
        curl -ksf "https://127.0.0.1:$port/healthz" >/dev/null && break
        sleep 0.1
    done
    mark=$(log_lines)
    : >"$WORK/latency.txt"
    while IFS= read -r -d '' pkg; do
        code_time=$(curl -ks -o /dev/null -w '%{http_code} %{time_total}' \
            -F "token=$token" -F "artifact=@$pkg" "https://127.0.0.1:$port/")
        [ "${code_time%% *}" = 201 ] ||
            { echo "upload of $pkg: ${code_time%% *}; see $WORK/serve.log" >&2; exit 1; }
        echo "${code_time#* }" >>"$WORK/latency.txt"
    done < <(find "$WORK/uploads" -name '*.conda' -print0 -o -name '*.tar.bz2' -print0)
    read -r ur ud uu <<<"$(traffic "$mark")"
    n=$(wc -l <"$WORK/latency.txt")
    sort -g "$WORK/latency.txt" | awk -v n="$n" -v r="$ur" '
        {a[NR] = $1 * 1000}
        END {
            p90 = int(n * 0.9); if (p90 < 1) p90 = 1
            printf "upload->201 against the bucket: %d uploads, median %.0f ms, p90 %.0f ms, max %.0f ms; %.1f store requests per upload\n",
                n, a[int((n + 1) / 2)], a[p90], a[n], r / n
        }'
    kill "$SERVE_PID" && wait "$SERVE_PID" 2>/dev/null || true
    SERVE_PID=
fi
