#!/usr/bin/env bash
# Fuzzes tandem's parsers of untrusted input with cargo-fuzz (libFuzzer + ASan): the forwarded
# headers (docs/reference.md §6), Accept-Encoding (§5), static request paths (§5 "Safety") and
# the configuration file (§3).
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]     default: 60 s for every target
#
# Needs a nightly toolchain (`rustup toolchain install nightly` where downloads are allowed);
# installs cargo-fuzz from crates.io if it is missing. Crashes land in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"

secs="${1:-60}"
shift || true

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "fuzz/run.sh: no nightly toolchain; cargo-fuzz needs one (rustup toolchain install nightly)" >&2
    exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

# Each target's dictionary: its own file, or the one its family shares.
dictionary() {
    case "$1" in
        x_forwarded_for | forwarded | node) echo dict/forwarded.dict ;;
        *) echo "dict/$1.dict" ;;
    esac
}

for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    # The shipped configuration is the best first input the loader's fuzzing can start from.
    if [ "$target" = config_toml ] && [ ! -e corpus/config_toml/tandem.toml ]; then
        cp ../tandem.toml corpus/config_toml/tandem.toml
    fi
    dict="$(dictionary "$target")"
    echo "== fuzzing $target for ${secs}s (dictionary $dict)"
    cargo +nightly fuzz run "$target" "corpus/$target" -- \
        -max_total_time="$secs" -max_len=4096 -dict="$dict" -print_final_stats=1
done
