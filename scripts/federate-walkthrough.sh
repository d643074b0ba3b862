#!/usr/bin/env bash
# Federated training with `cloister federate`, every party from its own shell, on one machine
# with the simulated TEE (development only). Usage:
#
#   bash scripts/federate-walkthrough.sh [WORKDIR]
#
# The compute provider starts the attestation service, a tenant and an instance that accepts
# the worker's simulated evidence, and the worker. Three hospitals each hold part of the
# breast-cancer table; each seals its rows to the attested worker (`federate join`) and approves
# training jobs over them with a DP budget (`federate approve --watch`). The model owner keeps a
# held-out split and runs five rounds of DP-SGD (`federate run`), then prints the accuracy.
# CLOISTER names the binary (default: `cloister` on PATH); PYTHON a Python 3 (default python3),
# used only to read JSON.
set -euo pipefail

CLOISTER=${CLOISTER:-cloister}
PYTHON=${PYTHON:-python3}
CSV=${CSV:-$(cd "$(dirname "$0")/.." && pwd)/assets/breast_cancer.csv}
WORK=${1:-$(mktemp -d -t cloister-federate-XXXXXX)}
mkdir -p "$WORK"
cd "$WORK"
echo "work directory: $WORK"

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

json() { "$PYTHON" -c "import json, sys; print(json.load(sys.stdin)$1)"; }
free_port() {
  "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# Waits until FILE has a line (a service's first output), or fails after 60 s.
wait_for_line() {
  for _ in $(seq 600); do
    [ -s "$1" ] && return 0
    sleep 0.1
  done
  echo "no output in $1 after 60 s" >&2
  return 1
}

echo "== compute provider: attestation service, tenant, instance, worker"
mkdir -p compute
port=$(free_port)
# The service's TLS certificate, from a private CA whose certificate every client is given.
"$CLOISTER" keygen --tls-server 127.0.0.1 --secret compute/tls.key --public compute/tls.pem \
  --tls-ca compute/tls-ca.pem
export CLOISTER_SERVER="https://127.0.0.1:$port"
export CLOISTER_SERVER_CA="$WORK/compute/tls-ca.pem"
"$CLOISTER" serve attestation --listen "127.0.0.1:$port" \
  --database "sqlite://$WORK/compute/authority.db" \
  --tls-cert compute/tls.pem --tls-key compute/tls.key \
  --operator-token-file compute/operator-token 2> compute/authority.log &
pids+=($!)
for _ in $(seq 600); do
  [ -s compute/operator-token ] && "$CLOISTER" tenant list --token-file compute/operator-token \
    > /dev/null 2>&1 && break
  sleep 0.1
done
# The service's signing-key fingerprint, from the `listening` event of its JSON log (the
# operator's trusted copy): workers bind it into their evidence and act only on answers that key
# signed.
fingerprint=$(sed -n 's/.*"event":"listening".*"service_fingerprint":"\([0-9a-f]\{64\}\)".*/\1/p' \
  compute/authority.log)
[ -n "$fingerprint" ] || { echo "no fingerprint in compute/authority.log" >&2; exit 1; }
"$CLOISTER" tenant create hospitals --token-file compute/operator-token --json |
  json '["token"]' > compute/admin-token
"$CLOISTER" keygen --sim-platform --secret compute/sim-platform.pem --public compute/sim-platform.pub
measurement=$("$CLOISTER" measure "$(command -v "$CLOISTER")")
echo "{\"measurements\": [\"$measurement\"]}" > compute/reference-values.json
"$CLOISTER" instance create federation --token-file compute/admin-token --builtin-policy dev-sim \
  --reference-values compute/reference-values.json \
  --sim-platform-key compute/sim-platform.pub --json > compute/instance.json
instance=$(json '["id"]' < compute/instance.json)
json '["ca_certificate_pem"]' < compute/instance.json > instance-ca.pem
"$CLOISTER" serve worker --listen 127.0.0.1:0 --authority "$CLOISTER_SERVER" \
  --instance "$instance" --service-fingerprint "$fingerprint" --data-dir compute/worker \
  --tee sim --sim-platform-key compute/sim-platform.pem > compute/worker.json 2> compute/worker.log &
pids+=($!)
wait_for_line compute/worker.json
worker=$(json '["url"]' < compute/worker.json)
echo "worker: $worker (measurement $measurement)"
target=(--worker "$worker" --ca "$WORK/instance-ca.pem" --measurement "$measurement" --accept-sim)

echo "== the parties' keys and data: every fifth row is the model owner's held-out split"
mkdir -p model-owner hospital-a hospital-b hospital-c
"$CLOISTER" keygen --signing --secret model-owner/signing.key --public model-owner/signing.pub
"$CLOISTER" keygen --secret model-owner/envelope.key --public model-owner/envelope.pub
# The first line of the table is its shape; each row is 30 features and the class.
tail -n +2 "$CSV" | awk 'NR % 5 == 1' > model-owner/test.csv
tail -n +2 "$CSV" | awk 'NR % 5 != 1' > train.csv
rows=$(wc -l < train.csv)
head -n $((rows / 5)) train.csv > hospital-a/rows.csv
sed -n "$((rows / 5 + 1)),$((rows * 55 / 100))p" train.csv > hospital-b/rows.csv
tail -n +$((rows * 55 / 100 + 1)) train.csv > hospital-c/rows.csv
rm train.csv

echo "== each hospital seals its rows to the attested worker and approves jobs (ε ≤ 6 at δ = 1e-5)"
for hospital in hospital-a hospital-b hospital-c; do
  "$CLOISTER" keygen --signing --secret $hospital/signing.key --public $hospital/signing.pub
  "$CLOISTER" federate join "${target[@]}" --name $hospital --key $hospital/signing.key \
    --authority "$CLOISTER_SERVER" --rows $hospital/rows.csv --out $hospital/participant.json
  "$CLOISTER" federate approve --exchange exchange --participant $hospital/participant.json \
    --key $hospital/signing.key --measurement "$measurement" \
    --recipient model-owner/envelope.pub --model-owner model-owner/signing.pub \
    --epsilon 6 --delta 1e-5 --watch \
    > $hospital/approve.log 2>&1 &
  pids+=($!)
done

echo "== the model owner runs five rounds of DP-SGD, averaged inside the enclave"
"$CLOISTER" federate run "${target[@]}" --exchange exchange --id breast-cancer \
  --key model-owner/signing.key --envelope model-owner/envelope.key \
  --participant hospital-a/participant.json --participant hospital-b/participant.json \
  --participant hospital-c/participant.json --test model-owner/test.csv \
  --rounds 5 --epochs 2 --batch-size 32 --learning-rate 0.5 \
  --dp-noise 2.0 --dp-clip 1.0 --dp-delta 1e-5 --aggregate-in-enclave \
  --out model-owner/model.json --onnx model-owner/model.onnx
