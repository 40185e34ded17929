#!/usr/bin/env bash
# Client CPU per call, deterministic: instructions counted by callgrind (valgrind), which
# repeats to the instruction for the same binary and inputs whatever else the machine does.
#
#   benches/instructions.sh            # every call and implementation (a few minutes)
#   N1=100 N2=1100 benches/instructions.sh user_by_email
#
# For each (call, implementation) benches/instructions.rs runs twice under callgrind, with N1
# and N2 calls after the same setup and warm-up; (Ir(N2) - Ir(N1)) / (N2 - N1) is one call's
# client instructions. "driver" is the hidden driver module as rustauth-deadpool-postgres calls
# it (no adapter: a schema and a client per call). "floor" is the same SQL by hand on
# tokio-postgres in the same driver, without building rustauth-core's DbRecord. Needs valgrind (apt-get install valgrind) and a
# PostgreSQL server as for the tests (tests/support/server.rs).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
n1=${N1:-200}
n2=${N2:-2200}
calls=("$@")
if [ ${#calls[@]} -eq 0 ]; then
    calls=(user_by_email user_by_email_with_accounts get_session session_create_delete rate_limit_consume)
fi
binary=$(cargo bench --bench instructions --no-run --message-format=json 2>/dev/null \
    | sed -n 's/.*"executable":"\([^"]*instructions[^"]*\)".*/\1/p' | tail -n 1)
[ -x "$binary" ] || { echo "could not build benches/instructions.rs" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Instructions of one run: callgrind's "totals:" (or "summary:") line.
count() {
    local out="$work/callgrind.$1.$2.$3"
    valgrind --tool=callgrind --callgrind-out-file="$out" "$binary" "$1" "$2" "$3" \
        >/dev/null 2>"$out.log" || { cat "$out.log" >&2; exit 1; }
    awk '/^(totals|summary):/ { print $2; exit }' "$out"
}

per_call() {
    local low high
    low=$(count "$1" "$2" "$n1")
    high=$(count "$1" "$2" "$n2")
    echo $(( (high - low) / (n2 - n1) ))
}

echo "| call | typed | generic | driver | floor | typed ÷ floor | generic ÷ floor |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for call in "${calls[@]}"; do
    typed=$(per_call typed "$call")
    if [ "$call" = rate_limit_consume ]; then
        generic="–"
        driver="–"
    else
        generic=$(per_call generic "$call")
        driver=$(per_call driver "$call")
    fi
    floor=$(per_call floor "$call")
    awk -v call="$call" -v t="$typed" -v g="$generic" -v d="$driver" -v f="$floor" 'BEGIN {
        gr = (g == "–") ? "–" : sprintf("%.2f", g / f);
        printf "| %s | %s | %s | %s | %s | %.2f | %s |\n", call, t, g, d, f, t / f, gr
    }'
done
echo
echo "Instructions per call (client only), N = $n2 calls minus N = $n1, $(valgrind --version)."
