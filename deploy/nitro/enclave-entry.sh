#!/usr/local/bin/busybox sh
# The Cloister worker's entry point inside a Nitro Enclave (deploy/nitro/Containerfile). The
# enclave's only channel is vsock; this script bridges it to TCP on the enclave's loopback:
#
#   parties → parent TCP 8443 → (socat on the parent) → vsock CID:9443 → here → 127.0.0.1:9443,
#             the worker's TLS port (TLS ends inside the enclave)
#   worker  → https://SERVICE_HOST:SERVICE_PORT, SERVICE_HOST mapped to 127.0.0.1 in /etc/hosts
#             → here → vsock to the parent (CID 3) port 8001 → vsock-proxy on the parent → the
#             attestation service (TLS from the worker to the service, end to end)
#
# The pins come from /etc/cloister/worker.env, part of the measured image.
set -eu
. /etc/cloister/worker.env
bb=/usr/local/bin/busybox

$bb ip link set lo up
$bb ip addr add 127.0.0.1/8 dev lo 2>/dev/null || true

/usr/local/bin/socat VSOCK-LISTEN:9443,fork,reuseaddr TCP:127.0.0.1:9443 &
/usr/local/bin/socat "TCP-LISTEN:${CLOISTER_SERVICE_PORT},bind=127.0.0.1,fork,reuseaddr" VSOCK-CONNECT:3:8001 &

exec /usr/local/bin/cloister serve worker \
  --tee nitro --nsm /dev/nsm \
  --listen 127.0.0.1:9443 \
  --authority "https://${CLOISTER_SERVICE_HOST}:${CLOISTER_SERVICE_PORT}" \
  --instance "${CLOISTER_INSTANCE}" \
  --service-fingerprint "${CLOISTER_SERVICE_FINGERPRINT}" \
  --server-ca /etc/cloister/service-ca.pem \
  --data-dir /var/lib/cloister
