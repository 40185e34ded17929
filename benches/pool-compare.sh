#!/usr/bin/env sh
# The target "rustauth-deadpool-postgres on our driver ≥ 1.4× itself on 0.3.2".
#
# Cargo cannot build rustauth-deadpool-postgres 0.3.2 against the published driver and this
# crate in one project, so the figure takes two runs with a common floor (the same
# hand-written SQL on a deadpool-postgres pool with prepare_cached, same pool size and tasks):
#   1. benches/hot_paths.rs, pool mode: deadpool-0.3.2 / floor        (published driver)
#   2. compat/deadpool/benches/pool.rs:  deadpool-on-ours / floor      (this crate, patched in)
# and prints, per call, (2) ÷ (1). Both runs see the same BENCH_* environment, e.g.
#   BENCH_QUICK=1 benches/pool-compare.sh         # quick and noisy
#   benches/pool-compare.sh                       # full configuration (~2 minutes)
# Each run's whole report is printed too (with its A/A column: read the quotient against it).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
published=$(mktemp)
patched=$(mktemp)
trap 'rm -f "$published" "$patched"' EXIT

BENCH_RATIOS_OUT="$published" cargo bench --bench hot_paths -- get_session user_by_email sign_up mixed
BENCH_RATIOS_OUT="$patched" cargo bench --manifest-path compat/deadpool/Cargo.toml --bench pool

echo
echo "## rustauth-deadpool-postgres 0.3.2: on this crate's driver vs on the published 0.3.2 driver"
echo
echo "| call | on ours / floor | on 0.3.2 / floor | on ours ÷ on 0.3.2 (target ≥ 1.4) |"
echo "| --- | ---: | ---: | ---: |"
while read -r call ours; do
    theirs=$(awk -v call="$call" '$1 == call { print $2 }' "$published")
    if [ -n "$theirs" ]; then
        awk -v call="$call" -v ours="$ours" -v theirs="$theirs" \
            'BEGIN { printf "| %s | %.2f | %.2f | %.2f |\n", call, ours, theirs, ours / theirs }'
    fi
done < "$patched"
