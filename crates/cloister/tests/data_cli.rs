//! `cloister data ingest`, `profile`, `label`, `preprocess`, `seal`, `verify-manifest` and
//! `annotations` as users run them: a bad row stops ingest with file, row and column,
//! `--rejects` quarantines it, the profile prints a table and writes an HTML report, annotation
//! exports import and merge with kappa and adjudication, a sealed data set's signed manifest
//! verifies and refuses tampering; and ingest and preprocessing of a large generated CSV stay in
//! bounded memory (peak RSS).

// Helpers in integration tests are not #[test] functions; a failed setup should panic loudly.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::{BufWriter, Write as _};
use std::path::Path;
use std::process::{Command, Output};

fn cloister(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cloister")).args(args).current_dir(dir).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn ingest_then_profile_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("patients.csv"),
        "id,email,age,note\n\
         1,ann@example.org,34,<script>alert(1)</script>\n\
         2,bob@example.org,41\n\
         3,cy@example.org,29,fine\n",
    )
    .unwrap();
    let failed = cloister(&["data", "ingest", "patients.csv", "--out", "set"], dir.path());
    assert!(!failed.status.success());
    let message = text(&failed.stderr);
    assert!(message.contains("patients.csv, row 3, column note"), "{message}");
    assert!(!dir.path().join("set/dataset.json").exists());

    let done = cloister(
        &[
            "data",
            "ingest",
            "patients.csv",
            "--out",
            "set2",
            "--rejects",
            "rejects.jsonl",
            "--type",
            "age=float",
        ],
        dir.path(),
    );
    assert!(done.status.success(), "{}", text(&done.stderr));
    let stdout = text(&done.stdout);
    assert!(stdout.contains("2 rows from 1 input(s)"), "{stdout}");
    assert!(stdout.contains("age: float"), "{stdout}");
    assert!(stdout.contains("1 record(s) rejected"), "{stdout}");
    let rejects = fs::read_to_string(dir.path().join("rejects.jsonl")).unwrap();
    assert_eq!(rejects.lines().count(), 1);
    assert!(rejects.contains("\"row\":3"), "{rejects}");

    let profiled = cloister(&["data", "profile", "set2", "--html", "report.html"], dir.path());
    assert!(profiled.status.success(), "{}", text(&profiled.stderr));
    let table = text(&profiled.stdout);
    assert!(table.contains("e-mail (2)"), "{table}");
    let html = fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(html.contains("&lt;script&gt;"));
    assert!(!html.contains("<script"));

    let json = cloister(&["data", "profile", "set2", "--json"], dir.path());
    let profile: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(profile["rows"], 2);
}

#[test]
fn preprocess_from_the_command_line_fits_then_applies_the_fitted_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    fs::write(
        path.join("visits.csv"),
        "patient,age,city,note\n\
         p1,30,Oslo,call ann@example.org\n\
         p2,,Lima,fine\n\
         p1,30,Oslo,call ann@example.org\n\
         p3,50,Oslo,ok\n",
    )
    .unwrap();
    fs::write(path.join("later.csv"), "patient,age,city,note\np9,,Oslo,x\np1,40,Lima,y\n").unwrap();
    for (csv, set) in [("visits.csv", "set"), ("later.csv", "later")] {
        let ingested = cloister(&["data", "ingest", csv, "--out", set], path);
        assert!(ingested.status.success(), "{}", text(&ingested.stderr));
    }
    fs::write(
        path.join("pipeline.toml"),
        "version = 1\n\
         [[step]]\nop = \"dedupe\"\n\
         [[step]]\nop = \"impute\"\nstrategy = \"mean\"\ncolumns = [\"age\"]\n\
         [[step]]\nop = \"one_hot\"\ncolumns = [\"city\"]\n\
         [[step]]\nop = \"redact\"\ncolumns = [\"note\"]\npii = [\"email\"]\n\
         [[step]]\nop = \"pseudonymize\"\ncolumns = [\"patient\"]\n",
    )
    .unwrap();
    fs::write(path.join("key"), b"0123456789abcdef-secret-key-bytes").unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["data", "preprocess"];
        args.extend_from_slice(extra);
        cloister(&args, path)
    };
    // Without the key, pseudonymize is refused before anything is written.
    let refused = run(&["set", "--pipeline", "pipeline.toml", "--out", "nokey"]);
    assert!(!refused.status.success());
    let message = text(&refused.stderr);
    assert!(message.contains("step 5 (pseudonymize): needs a key"), "{message}");
    assert!(!path.join("nokey/dataset.json").exists());

    let done = run(&["set", "--pipeline", "pipeline.toml", "--out", "pre", "--key-file", "key"]);
    let stdout = text(&done.stdout);
    assert!(done.status.success(), "{stdout}{}", text(&done.stderr));
    assert!(stdout.contains("4 rows in, 3 rows out"), "{stdout}");
    assert!(stdout.contains("city=Lima: int"), "{stdout}");
    let fitted = fs::read_to_string(path.join("pre/preprocessing.json")).unwrap();
    let parameters: serde_json::Value = serde_json::from_str(&fitted).unwrap();
    // The mean of 30 and 50 (the duplicate row went first).
    assert_eq!(parameters["steps"][1]["fitted"]["fill"]["age"], 40.0);
    assert!(!fitted.contains("secret-key"));
    let dataset: serde_json::Value =
        serde_json::from_slice(&fs::read(path.join("pre/dataset.json")).unwrap()).unwrap();
    assert_eq!(dataset["lineage"]["steps"].as_array().unwrap().len(), 5);
    assert_eq!(
        dataset["inputs"][0]["sha256"],
        cloister_data::source::sha256_hex(&fs::read(path.join("set/dataset.json")).unwrap())
    );

    // Later data gets the same transform: the fitted mean, the fitted vocabulary.
    let applied = run(&[
        "later",
        "--pipeline",
        "pipeline.toml",
        "--out",
        "pre-later",
        "--key-file",
        "key",
        "--fitted",
        "pre/preprocessing.json",
        "--json",
    ]);
    assert!(applied.status.success(), "{}", text(&applied.stderr));
    let report: serde_json::Value = serde_json::from_slice(&applied.stdout).unwrap();
    assert_eq!(report["steps"], parameters["steps"]);
    assert_eq!(report["run"]["rows_out"], 2);
    let later: serde_json::Value =
        serde_json::from_slice(&fs::read(path.join("pre-later/dataset.json")).unwrap()).unwrap();
    let column = |name: &str| {
        later["columns"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap().clone()
    };
    assert_eq!(column("age")["mean"], 40.0, "(40 filled in + 40) / 2");
    assert_eq!(column("city=Oslo")["max"], 1.0);
}

/// The generated input's size in MB: 200 by default, `CLOISTER_DATA_MEMORY_TEST_MB` to change.
#[test]
fn label_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("notes.csv"),
        "id,age,note\n1,71,chest pain since monday\n2,34,routine check\n3,80,fine\n4,45,\n",
    )
    .unwrap();
    let ingested = cloister(&["data", "ingest", "notes.csv", "--out", "set"], dir.path());
    assert!(ingested.status.success(), "{}", text(&ingested.stderr));
    fs::write(
        dir.path().join("rules.toml"),
        "[[rule]]\nname = \"pain\"\nlabel = \"urgent\"\nwhen = [\"note ~ '(?i)pain'\"]\n\n\
         [[rule]]\nname = \"elderly\"\nlabel = \"urgent\"\nwhen = [\"age >= 75\"]\n\n\
         [[rule]]\nname = \"routine\"\nlabel = \"routine\"\nwhen = [\"note ~ 'routine'\"]\n",
    )
    .unwrap();
    let labelled = cloister(
        &[
            "data",
            "label",
            "set",
            "--rules",
            "rules.toml",
            "--out",
            "labelled",
            "--column",
            "triage",
        ],
        dir.path(),
    );
    let out = text(&labelled.stdout);
    assert!(labelled.status.success(), "{out}{}", text(&labelled.stderr));
    assert!(out.contains("4 rows: 3 covered by a rule (75.0 %), 3 labelled"), "{out}");
    assert!(out.contains("label urgent: 2 rows"), "{out}");
    assert!(out.contains("label routine: 1 rows"), "{out}");
    assert!(dir.path().join("labelled/dataset.json").is_file());
    // The labelled data set profiles like any other: the label column is there.
    let profiled = cloister(&["data", "profile", "labelled", "--json"], dir.path());
    assert!(profiled.status.success(), "{}", text(&profiled.stderr));
    let profile: serde_json::Value = serde_json::from_slice(&profiled.stdout).unwrap();
    let triage = profile["columns"].as_array().unwrap().iter().find(|c| c["name"] == "triage");
    assert_eq!(triage.unwrap()["missing"], 1);
    // A rule on a column the data set lacks: a clear error, nothing written.
    fs::write(dir.path().join("bad.toml"), "[[rule]]\nname='x'\nlabel='y'\nwhen=['pulse > 100']\n")
        .unwrap();
    let refused =
        cloister(&["data", "label", "set", "--rules", "bad.toml", "--out", "nope"], dir.path());
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("rule \"x\": no column \"pulse\""),
        "{}",
        text(&refused.stderr)
    );
    assert!(!dir.path().join("nope/dataset.json").exists());
}

fn input_megabytes() -> u64 {
    std::env::var("CLOISTER_DATA_MEMORY_TEST_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(200)
}

/// The bound on the ingest's peak resident memory: well under the 200 MB input, so a reader
/// that held the input would fail it (measured: about 48 MB, the same for 20 MB and 200 MB).
const PEAK_LIMIT_KB: u64 = 128 * 1024;

/// Writes a generated CSV export of at least `target` bytes to `path`; returns its size and rows.
fn write_large_csv(path: &Path, target: u64) -> (u64, u64) {
    let mut out = BufWriter::new(fs::File::create(path).unwrap());
    writeln!(out, "id,value,flag,city,email,note").unwrap();
    let mut written = 0_u64;
    let mut rows = 0_u64;
    while written < target {
        let line = format!(
            "{rows},{:.4},{},{},user{rows}@example.org,\"free text, row {rows} of a generated export\"\n",
            (rows % 9973) as f64 / 7.0,
            rows.is_multiple_of(2),
            ["Lyon", "Oslo", "Quito", "Perth"][(rows % 4) as usize],
        );
        out.write_all(line.as_bytes()).unwrap();
        written += line.len() as u64;
        rows += 1;
    }
    out.flush().unwrap();
    (written, rows)
}

/// The VmHWM line a command printed under `CLOISTER_REPORT_PEAK_MEMORY`, in kB.
fn peak_memory_kb(output: &Output) -> u64 {
    let stderr = text(&output.stderr);
    stderr
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM line in {stderr}"))
}

#[test]
fn ingest_of_a_large_csv_stays_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let (written, rows) = write_large_csv(&dir.path().join("big.csv"), input_megabytes() << 20);
    let output = Command::new(env!("CARGO_BIN_EXE_cloister"))
        .args(["data", "ingest", "big.csv", "--out", "set", "--shard-rows", "500000"])
        .env("CLOISTER_REPORT_PEAK_MEMORY", "1")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains(&format!("{rows} rows from 1 input(s)")));
    let peak_kb = peak_memory_kb(&output);
    eprintln!("ingest of {written} bytes ({rows} rows): peak RSS {peak_kb} kB");
    assert!(peak_kb < PEAK_LIMIT_KB, "peak RSS {peak_kb} kB over {PEAK_LIMIT_KB} kB");
}

/// Streaming steps, two of them fitted (three passes over the rows), on the generated export.
const PREPROCESS_PIPELINE: &str = r#"version = 1

[[step]]
op = "select"
columns = ["id", "value", "city", "email", "note"]

[[step]]
op = "cast"
columns = { id = "float" }

[[step]]
op = "impute"
strategy = "mean"
columns = ["value"]

[[step]]
op = "standardize"
columns = ["id", "value"]

[[step]]
op = "text_clean"
columns = ["note"]
lowercase = true

[[step]]
op = "redact"
columns = ["email", "note"]
pii = ["email"]
"#;

/// The bound on preprocessing's peak resident memory. Measured: about 60 MB (61,020 kB for the
/// 200 MB export, 2.1 million rows; 60,768 kB for 20 MB), flat in the input's size. The rows'
/// decoded values take about 100 bytes each (two numbers, three strings), so a pass that held
/// them, or a set keyed per row (dedupe's 32-byte digests at ~80 bytes a row), would need some
/// 170 to 215 MB for these 2.1 million rows and fail; twice the measured value leaves room for
/// allocator and batch-size noise.
const PREPROCESS_LIMIT_KB: u64 = 128 * 1024;

#[test]
fn preprocess_of_a_large_data_set_stays_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let (written, rows) = write_large_csv(&path.join("big.csv"), input_megabytes() << 20);
    let ingested =
        cloister(&["data", "ingest", "big.csv", "--out", "set", "--shard-rows", "500000"], path);
    assert!(ingested.status.success(), "{}", text(&ingested.stderr));
    fs::remove_file(path.join("big.csv")).unwrap();
    fs::write(path.join("pipeline.toml"), PREPROCESS_PIPELINE).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_cloister"))
        .args(["data", "preprocess", "set", "--pipeline", "pipeline.toml", "--out", "pre"])
        .env("CLOISTER_REPORT_PEAK_MEMORY", "1")
        .current_dir(path)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains(&format!("{rows} rows in, {rows} rows out")), "{stdout}");
    let peak_kb = peak_memory_kb(&output);
    eprintln!("preprocess of a {written}-byte export ({rows} rows): peak RSS {peak_kb} kB");
    assert!(peak_kb < PREPROCESS_LIMIT_KB, "peak RSS {peak_kb} kB over {PREPROCESS_LIMIT_KB} kB");
}

/// A Label Studio export: three annotators classify four made-up triage notes; annotator 3 skips
/// one (cancelled) and marks a span.
const TRIAGE_EXPORT: &str = r#"[
  {"id": 1, "data": {"text": "chest pain since monday"}, "annotations": [
    {"completed_by": 1, "result": [{"type": "choices", "value": {"choices": ["urgent"]}}]},
    {"completed_by": 2, "result": [{"type": "choices", "value": {"choices": ["urgent"]}}]},
    {"completed_by": 3, "result": [{"type": "choices", "value": {"choices": ["urgent"]}},
      {"type": "labels", "value": {"start": 0, "end": 10, "text": "chest pain", "labels": ["SYMPTOM"]}}]}]},
  {"id": 2, "data": {"text": "routine check"}, "annotations": [
    {"completed_by": 1, "result": [{"type": "choices", "value": {"choices": ["routine"]}}]},
    {"completed_by": 2, "result": [{"type": "choices", "value": {"choices": ["routine"]}}]},
    {"completed_by": 3, "result": [{"type": "choices", "value": {"choices": ["urgent"]}}]}]},
  {"id": 3, "data": {"text": "dizzy after the new pills"}, "annotations": [
    {"completed_by": 1, "result": [{"type": "choices", "value": {"choices": ["urgent"]}}]},
    {"completed_by": 2, "result": [{"type": "choices", "value": {"choices": ["routine"]}}]},
    {"completed_by": 3, "result": [{"type": "choices", "value": {"choices": ["review"]}}]}]},
  {"id": 4, "data": {"text": "prescription renewal"}, "annotations": [
    {"completed_by": 1, "result": [{"type": "choices", "value": {"choices": ["routine"]}}]},
    {"completed_by": 2, "result": [{"type": "choices", "value": {"choices": ["routine"]}}]},
    {"completed_by": 3, "was_cancelled": true, "result": []}]}
]"#;

#[test]
fn annotations_import_and_merge_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    fs::write(path.join("triage.json"), TRIAGE_EXPORT).unwrap();
    let imported = cloister(
        &[
            "data",
            "annotations",
            "import",
            "--format",
            "label-studio",
            "triage.json",
            "--out",
            "ls",
        ],
        path,
    );
    let out = text(&imported.stdout);
    assert!(imported.status.success(), "{out}{}", text(&imported.stderr));
    assert!(
        out.contains("12 annotations of 4 items by 3 annotator(s) from 1 label-studio"),
        "{out}"
    );
    assert!(out.contains("1 cancelled annotation(s) not read"), "{out}");
    let summary: serde_json::Value =
        serde_json::from_slice(&fs::read(path.join("ls/annotations.json")).unwrap()).unwrap();
    assert_eq!(summary["labels"]["SYMPTOM"], 1);
    assert_eq!(fs::read_to_string(path.join("ls/annotations.jsonl")).unwrap().lines().count(), 12);

    let merged = cloister(
        &["data", "annotations", "merge", "ls", "--adjudicate", "majority", "--out", "merged"],
        path,
    );
    let out = text(&merged.stdout);
    assert!(merged.status.success(), "{out}{}", text(&merged.stderr));
    assert!(out.contains("Fleiss' kappa"), "{out}");
    // Item 4 was rated by two of the three: adjudicated, but not in kappa.
    assert!(out.contains("over 3 units rated by every annotator (1 partial)"), "{out}");
    let agreement: serde_json::Value =
        serde_json::from_slice(&fs::read(path.join("merged/agreement.json")).unwrap()).unwrap();
    // Fleiss over items 1–3: P̄ = (1 + 1/3 + 0)/3 = 4/9; p = (urgent 5, routine 3, review 1)/9,
    // P̄e = 35/81; κ = (4/9 − 35/81)/(1 − 35/81) = 1/46.
    let kappa = agreement["classes"]["kappa"].as_f64().unwrap();
    assert!((kappa - 1.0 / 46.0).abs() < 1e-9, "{kappa}");
    assert_eq!(agreement["classes"]["statistic"], "fleiss");
    let labels = fs::read_to_string(path.join("merged/labels.jsonl")).unwrap();
    let classes: Vec<(String, String)> = labels
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|row| row["kind"] == "class")
        .map(|row| (row["item"].as_str().unwrap().into(), row["label"].as_str().unwrap().into()))
        .collect();
    assert_eq!(
        classes,
        [
            ("1".into(), "urgent".into()),
            ("2".into(), "routine".into()),
            ("4".into(), "routine".into())
        ]
    );
    let conflicts = fs::read_to_string(path.join("merged/conflicts.jsonl")).unwrap();
    let classes_in_conflict: Vec<&str> =
        conflicts.lines().filter(|l| l.contains("\"kind\":\"class\"")).collect();
    assert_eq!(classes_in_conflict.len(), 1, "{conflicts}");
    assert!(classes_in_conflict[0].contains("\"item\":\"3\""), "{conflicts}");
    assert!(classes_in_conflict[0].contains("tie: review 1, routine 1, urgent 1"), "{conflicts}");

    // CoNLL, one file per annotator (named after the file), merged by one annotator's word.
    fs::write(path.join("alice.conll"), "Ann B-PER\nmet O\nBo B-PER\n\nin O\nOslo B-LOC\n")
        .unwrap();
    fs::write(path.join("bob.conll"), "Ann B-PER\nmet O\nBo O\n\nin O\nOslo B-LOC\n").unwrap();
    let imported = cloister(
        &[
            "data",
            "annotations",
            "import",
            "--format",
            "conll",
            "alice.conll",
            "bob.conll",
            "--out",
            "ner",
        ],
        path,
    );
    assert!(imported.status.success(), "{}", text(&imported.stderr));
    let merged = cloister(
        &[
            "data",
            "annotations",
            "merge",
            "ner",
            "--adjudicate",
            "annotator:bob",
            "--out",
            "m2",
            "--json",
        ],
        path,
    );
    assert!(merged.status.success(), "{}", text(&merged.stderr));
    let agreement: serde_json::Value = serde_json::from_slice(&merged.stdout).unwrap();
    assert_eq!(agreement["annotators"], serde_json::json!(["alice", "bob"]));
    assert_eq!(agreement["spans"]["statistic"], "cohen");
    assert_eq!(agreement["spans"]["unit"], "token");
    assert_eq!(agreement["spans"]["units"], 5);
    let labels = fs::read_to_string(path.join("m2/labels.jsonl")).unwrap();
    assert_eq!(labels.lines().count(), 2, "{labels}");
    assert!(!labels.contains("\"start\":2"), "bob marked no span at Bo: {labels}");

    // The table is a JSON-lines input for `data ingest`.
    let ingested = cloister(&["data", "ingest", "ner/annotations.jsonl", "--out", "set"], path);
    assert!(ingested.status.success(), "{}", text(&ingested.stderr));

    // Malformed input: file, line and rule named; nothing written.
    fs::write(path.join("bad.conll"), "Ann O\nLee I-PER\n").unwrap();
    let refused = cloister(
        &["data", "annotations", "import", "--format", "conll", "bad.conll", "--out", "bad"],
        path,
    );
    assert!(!refused.status.success());
    let message = text(&refused.stderr);
    assert!(message.contains("bad.conll: line 2: tag I-PER follows O: IOB2"), "{message}");
    assert!(!path.join("bad").exists());
    // An output directory with something in it is refused.
    let refused = cloister(
        &["data", "annotations", "merge", "ner", "--adjudicate", "majority", "--out", "ls"],
        path,
    );
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains("the output directory is not empty"));
    // So is a rule that is not one.
    let refused = cloister(
        &["data", "annotations", "merge", "ner", "--adjudicate", "loudest", "--out", "m3"],
        path,
    );
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains("unknown adjudication rule \"loudest\""));
}

/// Flips the last byte of `path`.
fn flip_last_byte(path: &Path) {
    let mut bytes = fs::read(path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(path, bytes).unwrap();
}

/// `manifest.jws` with its claims replaced by `edit`'s, the signature kept.
fn edit_claims(token: &str, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    edit(&mut claims);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    [parts[0], &payload, parts[2]].join(".")
}

fn sha256_file(path: &Path) -> String {
    cloister_data::source::sha256_hex(&fs::read(path).unwrap())
}

/// Seals a preprocessed data set (three shards) with a fresh party key and envelope key of
/// `suite`, verifies the manifest and the sealed shards, and opens one back to its shard file.
fn seal_round(path: &Path, suite: &str) {
    let run = |args: &[&str]| {
        let output = cloister(args, path);
        assert!(output.status.success(), "{args:?}: {}", text(&output.stderr));
        output
    };
    run(&["keygen", "--suite", suite, "--secret", "envelope.key", "--public", "envelope.pub"]);
    run(&[
        "keygen",
        "--signing",
        "--suite",
        suite,
        "--secret",
        "owner.key",
        "--public",
        "owner.pub",
    ]);
    let sealed = run(&[
        "data",
        "seal",
        "pre",
        "--recipient",
        "envelope.pub",
        "--owner-key",
        "owner.key",
        "--id",
        "visits-2026",
        "--out",
        "sealed",
        "--json",
    ]);
    let summary: serde_json::Value = serde_json::from_slice(&sealed.stdout).unwrap();
    assert_eq!(summary["id"], "visits-2026");
    assert_eq!(summary["shards"], 3);
    assert_eq!(summary["rows"], 5);
    assert_eq!(summary["manifest_sha256"], sha256_file(&path.join("sealed/manifest.jws")));

    let claims: serde_json::Value =
        serde_json::from_slice(&fs::read(path.join("sealed/manifest.json")).unwrap()).unwrap();
    let dataset: serde_json::Value =
        serde_json::from_slice(&fs::read(path.join("pre/dataset.json")).unwrap()).unwrap();
    let owner = fs::read_to_string(path.join("owner.pub")).unwrap();
    assert_eq!(claims["version"], 1);
    assert_eq!(claims["owner"], owner.trim());
    assert_eq!(claims["schema"], dataset["schema"]);
    assert_eq!(claims["rows"], 5);
    assert_eq!(claims["source"], sha256_file(&path.join("pre/dataset.json")));
    assert_eq!(claims["lineage"], dataset["lineage"]);
    for index in 0..3 {
        let shard = &claims["shards"][index];
        let object_id = format!("visits-2026.shard-{index:05}");
        assert_eq!(shard["object_id"], object_id.as_str());
        assert_eq!(shard["plaintext_sha256"], dataset["shards"][index]["sha256"]);
        assert_eq!(shard["rows"], dataset["shards"][index]["rows"]);
        assert_eq!(shard["sha256"], sha256_file(&path.join(format!("sealed/{object_id}.sealed"))));
    }

    let verified = run(&[
        "data",
        "verify-manifest",
        "sealed/manifest.jws",
        "--owner",
        "owner.pub",
        "--sealed",
        "sealed",
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&verified.stdout).unwrap();
    assert_eq!(report["manifest_sha256"], summary["manifest_sha256"]);
    assert_eq!(report["owner"], owner.trim());
    assert_eq!(report["sealed_checked"], true);

    run(&[
        "open",
        "--secret",
        "envelope.key",
        "--input",
        "sealed/visits-2026.shard-00001.sealed",
        "--output",
        "opened.parquet",
    ]);
    assert_eq!(
        fs::read(path.join("opened.parquet")).unwrap(),
        fs::read(path.join("pre/shard-00001.parquet")).unwrap()
    );
}

#[test]
fn seal_a_data_set_with_a_signed_manifest_then_verify_it_and_open_a_shard() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    fs::write(
        path.join("visits.csv"),
        "patient,age,note\np1,30,call ann@example.org\np2,,fine\np3,50,ok\np4,41,x\np5,29,y\n",
    )
    .unwrap();
    fs::write(
        path.join("pipeline.toml"),
        "version = 1\n[[step]]\nop = \"impute\"\nstrategy = \"mean\"\ncolumns = [\"age\"]\n",
    )
    .unwrap();
    let ok = |args: &[&str], at: &Path| {
        let output = cloister(args, at);
        assert!(output.status.success(), "{args:?}: {}", text(&output.stderr));
    };
    for suite in ["x25519", "sm"] {
        let round = path.join(suite);
        fs::create_dir(&round).unwrap();
        fs::copy(path.join("visits.csv"), round.join("visits.csv")).unwrap();
        fs::copy(path.join("pipeline.toml"), round.join("pipeline.toml")).unwrap();
        ok(&["data", "ingest", "visits.csv", "--out", "set", "--shard-rows", "2"], &round);
        ok(&["data", "preprocess", "set", "--pipeline", "pipeline.toml", "--out", "pre"], &round);
        seal_round(&round, suite);
    }
    let path = path.join("x25519");
    let refused = |args: &[&str]| {
        let output = cloister(args, &path);
        assert!(!output.status.success(), "{args:?} was not refused");
        text(&output.stderr)
    };
    let verify = |manifest: &str, extra: &[&str]| {
        let mut args = vec!["data", "verify-manifest", manifest];
        args.extend_from_slice(extra);
        cloister(&args, &path)
    };

    // A tampered sealed shard: the manifest still verifies, the sealed shards do not.
    let sealed_shard = path.join("sealed/visits-2026.shard-00002.sealed");
    let original = fs::read(&sealed_shard).unwrap();
    flip_last_byte(&sealed_shard);
    assert!(verify("sealed/manifest.jws", &[]).status.success());
    let message = text(&verify("sealed/manifest.jws", &["--sealed", "sealed"]).stderr);
    assert!(message.contains("visits-2026.shard-00002.sealed"), "{message}");
    assert!(message.contains("sealed shard visits-2026.shard-00002: SHA-256"), "{message}");
    fs::write(&sealed_shard, original).unwrap();
    assert!(verify("sealed/manifest.jws", &["--sealed", "sealed"]).status.success());

    // Another party's key: not the owner named, and a manifest it signed is not the owner's.
    let output =
        cloister(&["keygen", "--signing", "--secret", "other.key", "--public", "other.pub"], &path);
    assert!(output.status.success());
    let message = text(&verify("sealed/manifest.jws", &["--owner", "other.pub"]).stderr);
    assert!(message.contains("the manifest's owner is cloister-es256:"), "{message}");
    let other = cloister_sign::AnySigningKey::from_text(
        fs::read_to_string(path.join("other.key")).unwrap().trim(),
    )
    .unwrap();
    let claims: cloister_types::DatasetManifest =
        serde_json::from_slice(&fs::read(path.join("sealed/manifest.json")).unwrap()).unwrap();
    let day = std::time::Duration::from_secs(86_400);
    let now = cloister_sign::unix_now();
    let resigned = other.sign("data set manifest", &claims, now, day).unwrap();
    fs::write(path.join("resigned.jws"), resigned).unwrap();
    let message = text(&verify("resigned.jws", &[]).stderr);
    assert!(message.contains("does not verify with its owner's key"), "{message}");
    // Re-signed as the other key's own: it verifies alone, but not as the owner's.
    let mut taken = claims.clone();
    taken.owner = other.public_key().to_text();
    fs::write(path.join("taken.jws"), other.sign("data set manifest", &taken, now, day).unwrap())
        .unwrap();
    assert!(verify("taken.jws", &[]).status.success());
    let message = text(&verify("taken.jws", &["--owner", "owner.pub"]).stderr);
    assert!(message.contains("not cloister-es256:"), "{message}");

    // Edited claims break the signature.
    let token = fs::read_to_string(path.join("sealed/manifest.jws")).unwrap();
    fs::write(path.join("edited.jws"), edit_claims(&token, |c| c["rows"] = 6.into())).unwrap();
    let message = text(&verify("edited.jws", &[]).stderr);
    assert!(message.contains("does not verify with its owner's key"), "{message}");

    let seal = |set: &str, id: &str, key: &str, out: &str| {
        refused(&[
            "data",
            "seal",
            set,
            "--recipient",
            "envelope.pub",
            "--owner-key",
            key,
            "--id",
            id,
            "--out",
            out,
        ])
    };
    // A non-empty output directory is refused and left as it was.
    let message = seal("pre", "visits-2026", "owner.key", "sealed");
    assert!(message.contains("is not empty"), "{message}");
    assert_eq!(fs::read_to_string(path.join("sealed/manifest.jws")).unwrap(), token);
    // Ids that make no valid object ids, and a key that is not a party signing key.
    let long = "x".repeat(120);
    for id in ["", "../up", ".hidden", long.as_str()] {
        let message = seal("pre", id, "owner.key", "bad-id");
        assert!(message.contains("is not 1 to 128 letters"), "{id:?}: {message}");
    }
    let message = seal("pre", "visits-2026", "envelope.key", "bad-key");
    assert!(message.contains("is not a party signing key"), "{message}");
    // A shard changed after its data set was written is refused before anything is sealed.
    flip_last_byte(&path.join("pre/shard-00001.parquet"));
    let message = seal("pre", "visits-2026", "owner.key", "tampered");
    assert!(message.contains("shard-00001.parquet: digest"), "{message}");
    for out in ["bad-id", "bad-key", "tampered"] {
        assert!(!path.join(out).exists(), "{out} was left behind");
    }
}
