#!/usr/bin/env bash
# Seeds fuzz/corpus/<target>/ from the real packages in ../shared/fixtures
# (and the project's own fixtures/), which are not copied into the
# repository. Needs bzip2, unzip and zstd (Debian: bzip2 unzip zstd).
# Idempotent: a seed is named by its content's sha256.
set -euo pipefail
cd "$(dirname "$0")"
shared="${SHARED_FIXTURES:-../../shared/fixtures}"
[ -d "$shared" ] || shared=../../../shared/fixtures
[ -d "$shared" ] || { echo "no ../shared/fixtures beside the repository" >&2; exit 1; }

for tool in bzip2 unzip zstd sha256sum; do
    command -v "$tool" >/dev/null ||
        { echo "seed.sh needs $tool (apt-get install bzip2 unzip zstd)" >&2; exit 1; }
done

targets=(package_tar_bz2 package_conda package_tar bzip2_differential repodata_json)
for target in "${targets[@]}"; do mkdir -p "corpus/$target"; done

# Writes stdin to corpus/$1/<sha256>.
add() {
    local tmp
    tmp=$(mktemp)
    cat >"$tmp"
    if [ -s "$tmp" ]; then
        mv "$tmp" "corpus/$1/$(sha256sum "$tmp" | cut -c1-40)"
    else
        rm -f "$tmp"
    fi
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mapfile -t packages < <(find "$shared" ../fixtures -type f \( -name '*.tar.bz2' -o -name '*.conda' \) | sort)
for package in "${packages[@]}"; do
    name=$(basename "$package")
    case "$name" in
        *.tar.bz2)
            add package_tar_bz2 <"$package"
            add bzip2_differential <"$package"
            if bzip2 -dc "$package" >"$work/tar" 2>/dev/null; then
                add package_tar <"$work/tar"
                tar -xOf "$work/tar" info/index.json 2>/dev/null | add repodata_json || true
                tar -xOf "$work/tar" info/run_exports.json 2>/dev/null | add repodata_json || true
            fi
            ;;
        *.conda)
            stem=${name%.conda}
            { printf '%s\n' "$stem"; cat "$package"; } | add package_conda
            rm -rf "$work/zip" && mkdir "$work/zip"
            unzip -qq -o "$package" -d "$work/zip" 2>/dev/null || continue
            for part in "$work"/zip/*.tar.zst; do
                [ -e "$part" ] || continue
                zstd -qdc "$part" >"$work/tar" 2>/dev/null || continue
                add package_tar <"$work/tar"
                tar -xOf "$work/tar" info/index.json 2>/dev/null | add repodata_json || true
            done
            ;;
    esac
done

# Concatenated streams and trailing garbage for the bzip2 target.
printf 'hello' | bzip2 -c >"$work/a.bz2"
printf 'world' | bzip2 -c >"$work/b.bz2"
cat "$work/a.bz2" "$work/b.bz2" | add bzip2_differential
{ cat "$work/a.bz2"; printf 'garbage'; } | add bzip2_differential

for target in "${targets[@]}"; do
    echo "$target: $(find "corpus/$target" -type f | wc -l) seeds"
done
