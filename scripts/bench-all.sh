#!/usr/bin/env bash
# Runs every peer comparison of docs/BENCHMARKS.md on this machine, one after the other, and
# writes their tables — each row with its ratio to the peer or the target — into the block
# between the `bench-all` markers at the end of docs/BENCHMARKS.md (the dated sections above it
# keep the history and the analysis).
#
# Usage: scripts/bench-all.sh [SECTION ...]
#   sections: envelope verify service onnx llm offload (default: all)
# Needs: python3, openssl, PostgreSQL (scripts/start-postgres.sh installs it), rage (installed
# with cargo if missing), the assets (`scripts/fetch-assets.sh all`, run here). Release builds
# are made here. Wall clock on a shared VM: expect ±10 %, and run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
sections=("$@")
[[ ${#sections[@]} -gt 0 ]] || sections=(envelope verify service onnx llm offload)
target="${CARGO_TARGET_DIR:-target}"
out="$target/bench-all"
mkdir -p "$out"

echo "--- release build" >&2
cargo build --release --locked -p cloister --bin cloister --example attest_load --example serve_bench >&2
cargo build --release --locked -p cloister-offload --example offload_bench >&2
bash scripts/fetch-assets.sh all >&2

# Runs a section's command; its stdout (Markdown) becomes the section. A failure is written
# into the section, never hidden.
run_section() {
  local name=$1
  shift
  echo "--- $name" >&2
  if "$@" >"$out/$name.md.tmp"; then
    mv "$out/$name.md.tmp" "$out/$name.md"
  else
    echo "**The $name benchmark failed (exit $?); its output is in \`$out/$name.md.tmp\`.**" \
      >"$out/$name.md"
  fi
}

# `cloister seal`/`open` against cat, rage and openssl: seconds → a table with ratios.
envelope() {
  command -v rage >/dev/null || cargo install rage --locked >&2
  TMPDIR=/dev/shm CLOISTER_BIN="$target/release/cloister" bash scripts/bench-envelope.sh 1024 \
    >"$out/envelope.txt"
  python3 - "$out/envelope.txt" <<'PY'
import re, sys
times = {}
for line in open(sys.argv[1]):
    m = re.match(r"^(.*?)\s+([0-9.]+)$", line.rstrip())
    if m:
        times[m.group(1).strip()] = float(m.group(2))
cat = times.get("cat (read + write floor)")
print("1 GiB on tmpfs, all cores, best of 3 (`scripts/bench-envelope.sh`).\n")
print("| command | seconds | ÷ cat (target ≤ 1.25) | rage ÷ this |")
print("|---|---|---|---|")
for ours, peer in [("cloister seal", "rage -e"), ("cloister open", "rage -d")]:
    t = times.get(ours)
    if t is None:
        continue
    vs_cat = f"{t / cat:.2f}" if cat else "—"
    vs_rage = f"{times[peer] / t:.2f}" if peer in times else "— (rage not run)"
    print(f"| `{ours}` | {t:.2f} | {vs_cat} | {vs_rage} |")
for other in ["rage -e", "rage -d", "openssl enc -aes-256-ctr", "cat (read + write floor)"]:
    if other in times:
        print(f"| `{other}` | {times[other]:.2f} | {times[other] / cat:.2f} | |")
PY
}

# Evidence verification: the example's table, then each DCAP row's ratio to dcap-qvl.
verify() {
  cargo run --quiet --release --locked -p cloister-verify --example verify_bench -- 100 \
    >"$out/verify.txt"
  cat "$out/verify.txt"
  python3 - "$out/verify.txt" <<'PY'
import re, sys
cpu = {}
for line in open(sys.argv[1]):
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) == 3 and re.match(r"^[0-9.]+$", cells[2]):
        cpu[cells[0]] = float(cells[2])
print("\n| Cloister vs dcap-qvl (µs on CPU) | Cloister | dcap-qvl | dcap-qvl ÷ Cloister (target ≥ 3.5) |")
print("|---|---|---|---|")
for kind in ["SGX", "TDX"]:
    ours = next((v for k, v in cpu.items() if k.startswith(f"cloister: {kind}") and "collateral" in k), None)
    peer = next((v for k, v in cpu.items() if k.startswith("dcap-qvl") and kind in k), None)
    if ours and peer:
        print(f"| {kind} quote + collateral | {ours:.0f} | {peer:.0f} | {peer / ours:.1f} |")
PY
}

# The attestation service under load, SQLite and PostgreSQL, 8 and 32 clients, against the
# targets (2,000/s on PostgreSQL and 1,000/s on SQLite at 8 clients, p99 < 20 ms).
service() {
  local pg db
  pg="$(bash scripts/start-postgres.sh)"
  psql "$pg" -qc 'DROP DATABASE IF EXISTS bench_load' >&2
  psql "$pg" -qc 'CREATE DATABASE bench_load' >&2
  db="$(mktemp -d)"
  {
    for clients in 8 32; do
      "$target/release/examples/attest_load" --database "sqlite://$db/load-$clients.db" \
        --clients "$clients" --seconds 15
      "$target/release/examples/attest_load" --database "${pg%/*}/bench_load" \
        --clients "$clients" --seconds 15
    done
  } >"$out/service.txt"
  rm -rf "$db"
  python3 - "$out/service.txt" <<'PY'
import re, sys
print("| database | clients | attestations/s | p50 | p99 | ÷ target |")
print("|---|---|---|---|---|---|")
for line in open(sys.argv[1]):
    m = re.match(r"(\w+): \d+ attestations in [0-9.]+ s = (\d+)/s with (\d+) clients; p50 ([0-9.]+) ms, p99 ([0-9.]+) ms", line)
    if m:
        backend, rate, clients, p50, p99 = m.groups()
        target = 2000 if backend.startswith("postgres") else 1000
        print(f"| {backend} | {clients} | {rate} | {p50} ms | {p99} ms | {int(rate) / target:.2f} (of {target}/s) |")
PY
}

for section in "${sections[@]}"; do
  case "$section" in
    envelope) run_section envelope envelope ;;
    verify) run_section verify verify ;;
    service) run_section service service ;;
    # Cloister's ONNX engine (ort and tract backends) beside onnxruntime's Python API, with ratios.
    onnx) run_section onnx bash scripts/bench-onnxruntime.sh 2000 ;;
    # The LLM through the engine and through proxy + OHTTP + worker (serve_bench); the llama.cpp
    # peer joins when the engine does (issue 16).
    llm) run_section llm "$target/release/examples/serve_bench" --tokens 128 --runs 3 --requests 200 ;;
    offload) run_section offload "$target/release/examples/offload_bench" 1 ;;
    *)
      echo "unknown section $section (envelope verify service onnx llm offload)" >&2
      exit 2
      ;;
  esac
done

python3 - "$out" "${sections[@]}" <<'PY'
import datetime, pathlib, re, sys
out = pathlib.Path(sys.argv[1])
doc = pathlib.Path("docs/BENCHMARKS.md")
text = doc.read_text()
begin, end = "<!-- bench-all:begin -->", "<!-- bench-all:end -->"
if begin not in text:
    text = text.rstrip("\n") + f"\n\n## Every comparison, as `scripts/bench-all.sh` last wrote it\n\n{begin}\n{end}\n"
head, rest = text.split(begin, 1)
old, tail = rest.split(end, 1)
sections = {}
for m in re.finditer(r"^### (\w+) .*?\n(.*?)(?=^### |\Z)", old, re.M | re.S):
    sections[m.group(1)] = m.group(0).rstrip() + "\n"
today = datetime.date.today().isoformat()
for name in sys.argv[2:]:
    body = (out / f"{name}.md").read_text().strip()
    sections[name] = f"### {name} ({today})\n\n{body}\n"
order = ["envelope", "verify", "service", "onnx", "llm", "offload"]
block = "\n" + "\n".join(sections[n] for n in order if n in sections)
doc.write_text(head + begin + block + end + tail)
PY
echo "docs/BENCHMARKS.md: the bench-all block now holds ${sections[*]}" >&2
