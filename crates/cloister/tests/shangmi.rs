//! The ShangMi walkthrough of `docs/shangmi.md`, run exactly as written (every fenced shell block
//! marked `<!-- doc-test: shangmi -->`, joined, by bash with `set -euo pipefail`; only the
//! `ASSETS=` line is substituted), followed by the attacks on the suite boundary against the
//! same running service and worker: an ES256 owner's object and grant, an X25519 output
//! recipient, and a ShangMi worker started on an ES256 instance are each refused, saying so; and
//! another job's genuine results under the hospital's job id are refused by `job fetch`.

// Helpers in integration tests are not #[test] functions; a failed setup should panic loudly.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;

const MARKER: &str = "<!-- doc-test: shangmi -->";

/// What the test runs after the walkthrough, in its directory and with its shell variables.
const ATTACKS: &str = r#"
# 1. An ES256 owner cannot seal to the ShangMi enclave from the command line.
cloister keygen --signing --secret es.key --public es.pub
cloister keygen --secret x25519.key --public x25519.pub
if cloister job upload features.csv "${target[@]}" --id es-features --recipient enclave \
  --owner-key es.key --content-type text/csv 2> es-upload.err; then
  echo "ATTACK PASSED: an ES256 owner sealed to the ShangMi enclave"; exit 1
fi
grep -q "takes the grants of one suite only" es-upload.err || { cat es-upload.err; exit 1; }

# 2. The enclave itself refuses a job whose data owner is an ES256 key (its grant is signed by
#    that key), and a job whose output goes to an X25519 key: each before anything is opened.
python3 - <<'PY'
import json
job = json.load(open("job.json"))
job["id"] = "mixed-owner"
job["data"]["owner"] = open("es.pub").read().strip()
json.dump(job, open("mixed-owner.json", "w"))
job = json.load(open("job.json"))
job["id"] = "mixed-recipient"
job["output_recipients"] = [open("x25519.pub").read().strip()]
json.dump(job, open("mixed-recipient.json", "w"))
PY
grant() {  # JOB ROLE KEY OUT
  cloister job grant --job "$1" --role "$2" --signing-key "$3" --measurement "$measurement" \
    --instance "$instance" --output "$4"
}
grant mixed-owner.json model owner.key mixed-owner.model.grant
grant mixed-owner.json data es.key mixed-owner.data.grant
if cloister job submit "${target[@]}" --job mixed-owner.json --grant mixed-owner.model.grant \
  --grant mixed-owner.data.grant 2> mixed-owner.err; then
  echo "ATTACK PASSED: the ShangMi enclave took an ES256 owner's grant"; exit 1
fi
grep -q "mixing suites is refused" mixed-owner.err || { cat mixed-owner.err; exit 1; }
grant mixed-recipient.json model owner.key mixed-recipient.model.grant
grant mixed-recipient.json data hospital.key mixed-recipient.data.grant
if cloister job submit "${target[@]}" --job mixed-recipient.json \
  --grant mixed-recipient.model.grant --grant mixed-recipient.data.grant 2> mixed-recipient.err; then
  echo "ATTACK PASSED: the ShangMi enclave sealed results to an X25519 key"; exit 1
fi
grep -q "mixing suites is refused" mixed-recipient.err || { cat mixed-recipient.err; exit 1; }

# 2b. An input sealed to a key-broker key is refused at submit: a ShangMi enclave takes only
#     inputs sealed to itself (key-broker releases are X25519), before anything is recorded.
cloister key register features-key --instance "$instance" --measurement "$measurement" --json |
  json '["recipient"]' > features.recipient
cloister job upload features.csv "${target[@]}" --id brokered --recipient features.recipient   --owner-key hospital.key --content-type text/csv > brokered.ref
python3 - <<'PY'
import json
job = json.load(open("job.json"))
job["id"] = "brokered"
job["data"] = json.load(open("brokered.ref"))
json.dump(job, open("brokered.json", "w"))
PY
grant brokered.json model owner.key brokered.model.grant
grant brokered.json data hospital.key brokered.data.grant
if cloister job submit "${target[@]}" --job brokered.json --grant brokered.model.grant \
  --grant brokered.data.grant 2> brokered.err; then
  echo "ATTACK PASSED: the ShangMi enclave queued an input it cannot open"; exit 1
fi
grep -q "takes only inputs sealed to itself" brokered.err || { cat brokered.err; exit 1; }

# 3. A ShangMi worker on an ES256 instance does not start: the service refuses its evidence.
cloister instance create es --builtin-policy dev-sim --sim-platform-key sim-platform.pub \
  --reference-values reference-values.json --json > es-instance.json
es_instance=$(json '["id"]' < es-instance.json)
if timeout 60 cloister serve worker --listen 127.0.0.1:0 --instance "$es_instance" --tee sim \
  --suite sm --sim-platform-key sim-platform.key --service-fingerprint "$fingerprint" \
  --authority "$CLOISTER_SERVER" --data-dir es-worker > es-worker.json 2> es-worker.log; then
  echo "ATTACK PASSED: a ShangMi worker started on an ES256 instance"; exit 1
fi
grep -q "an instance and its enclaves use one suite" es-worker.log || { cat es-worker.log; exit 1; }

# 4. The compute provider runs its own job under the hospital's job id, in another attested
#    enclave of the same instance, with outputs to the hospital's key: `job fetch` refuses it,
#    since its receipt does not name the job the hospital granted (red team, this issue).
cloister serve worker --listen 127.0.0.1:0 --instance "$instance" --tee sim --suite sm \
  --sim-platform-key sim-platform.key --service-fingerprint "$fingerprint" \
  --authority "$CLOISTER_SERVER" --data-dir worker-2 > worker-2.json 2> worker-2.log &
wait_for worker-2.json '"url"'
w2=$(json '["url"]' < worker-2.json)
other=(--worker "$w2" --ca instance-ca.pem --measurement "$measurement" --accept-sim)
cloister keygen --signing --suite sm --secret mallory.key --public mallory.pub
awk -F, 'BEGIN { OFS = "," } { for (i = 1; i <= NF; i++) $i = 0; print }' features.csv > fake.csv
cloister job upload "$ASSETS/breast_cancer_classifier.onnx" "${other[@]}" --id model \
  --recipient enclave --owner-key mallory.key --content-type application/onnx > fake-model.ref
cloister job upload fake.csv "${other[@]}" --id features --recipient enclave \
  --owner-key mallory.key --content-type text/csv > fake-data.ref
printf '{"id": "scores", "kind": "batch-inference", "model": %s, "data": %s,
  "output_recipients": ["%s"]}\n' "$(cat fake-model.ref)" "$(cat fake-data.ref)" \
  "$(cat hospital-envelope.pub)" > fake-job.json
grant fake-job.json model mallory.key fake-model.grant
grant fake-job.json data mallory.key fake-data.grant
cloister job submit "${other[@]}" --job fake-job.json --grant fake-model.grant \
  --grant fake-data.grant
cloister job status scores "${other[@]}" --watch
if cloister job fetch --job job.json "${other[@]}" --secret hospital-envelope.key \
  --output substituted.csv 2> substituted.err; then
  echo "ATTACK PASSED: job fetch took another job's results under the hospital's job id"; exit 1
fi
grep -q "another job's with the same id" substituted.err || { cat substituted.err; exit 1; }
test ! -e substituted.csv
if cloister job fetch scores "${other[@]}" --secret hospital-envelope.key \
  --output by-id.csv 2> by-id.err; then
  echo "ATTACK PASSED: job fetch by id alone, unbound to a job"; exit 1
fi
grep -q "give the job you granted or submitted with --job" by-id.err || { cat by-id.err; exit 1; }
echo "every attack was refused"
"#;

#[test]
fn a_shangmi_instance_and_worker_run_a_batch_job_in_sm2_sm3_sm4_and_refuse_mixing() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let doc = std::fs::read_to_string(root.join("docs/shangmi.md")).unwrap();
    let blocks = support::marked_blocks(&doc, MARKER);
    assert_eq!(blocks.len(), 2, "docs/shangmi.md has two marked blocks");
    let script = blocks.concat();
    for needed in [
        "--token-signing sm2",
        "--suite sm",
        "keygen --signing --suite sm",
        "--recipient enclave",
        "cloister job fetch",
    ] {
        assert!(script.contains(needed), "the walkthrough no longer shows {needed:?}");
    }
    assert!(!script.contains("shared/"), "the walkthrough must not depend on ../shared");
    let assets = root.join("assets").canonicalize().unwrap();
    let script = support::substitute(&script, "ASSETS", &assets) + ATTACKS;
    let run =
        support::run_walkthrough(&script, None, 600, "shangmi", &["service.log", "worker.log"]);
    assert!(run.success, "{}", run.report);
    let (tmp, stdout) = (&run.tmp, &run.stdout);
    assert!(stdout.contains("every attack was refused"), "{stdout}");

    // The results: one prediction per patient, opened with the hospital's SM2 key.
    let dir = tmp.path().join("shangmi");
    let scores = std::fs::read_to_string(dir.join("scores.csv")).unwrap();
    assert_eq!(scores.lines().count(), 1 + 569, "a header and 569 predictions:\n{scores}");
    // Everything the parties signed and the enclave answered is in the ShangMi suite.
    assert!(stdout.contains("'alg': 'SM2SM3'"), "the receipt is SM2-signed: {stdout}");
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("scores.csv.receipt.json")).unwrap())
            .unwrap();
    assert_eq!(jws_alg(status["receipt"].as_str().unwrap()), "SM2SM3");
    for grant in ["model.grant", "data.grant"] {
        let token = std::fs::read_to_string(dir.join(grant)).unwrap();
        assert_eq!(jws_alg(token.trim()), "SM2SM3", "{grant}");
    }
    for key in ["owner.pub", "hospital.pub"] {
        let text = std::fs::read_to_string(dir.join(key)).unwrap();
        assert!(text.starts_with("cloister-sm2sig:"), "{key}: {text}");
    }
    // The sealed inputs and results are SM4-GCM envelopes (suite ids 0x5302/0x5303/0x5304).
    let model_ref: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("model.ref")).unwrap()).unwrap();
    let stored = dir.join("worker/objects").join(model_ref["object_id"].as_str().unwrap());
    let sealed = std::fs::read(&stored).unwrap();
    let header = cloister_seal::read_header(sealed.as_slice()).unwrap();
    assert_eq!(header.suite(), cloister_seal::Suite::ShangMi);
}

/// The `alg` of a compact JWS's header.
fn jws_alg(token: &str) -> String {
    use base64::Engine as _;
    let header = token.split('.').next().unwrap();
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).unwrap();
    let header: serde_json::Value = serde_json::from_slice(&header).unwrap();
    header["alg"].as_str().unwrap_or_default().to_owned()
}
