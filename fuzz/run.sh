#!/usr/bin/env bash
# Fuzzes tandem's forwarded-header parsers (docs/reference.md §6) with cargo-fuzz (libFuzzer + ASan).
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

for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    echo "== fuzzing $target for ${secs}s"
    cargo +nightly fuzz run "$target" "corpus/$target" -- \
        -max_total_time="$secs" -max_len=4096 -dict=dict/forwarded.dict -print_final_stats=1
done
