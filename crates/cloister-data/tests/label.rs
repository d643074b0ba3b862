//! Labelling a real data set (scikit-learn's breast-cancer table) and generated ones with rules:
//! the labelled data set keeps every row and column, the statistics match counts taken
//! independently, and tampered shards, clashing columns and bad rules are refused.

// Helpers in integration tests are not #[test] functions; a failed setup should panic loudly.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};

use cloister_data::label::{LABELLING_FILE, Labelling, label_dataset};
use cloister_data::{IngestOptions, Rejects, Silent, ingest, profile};

fn ingest_csv(dir: &Path, name: &str, csv: &str) -> PathBuf {
    let input = dir.join(format!("{name}.csv"));
    fs::write(&input, csv).unwrap();
    let out = dir.join(name);
    let options = IngestOptions { shard_rows: 100, ..IngestOptions::default() };
    ingest(&[input], &out, &options, Rejects::refuse(), &Silent).unwrap();
    out
}

/// The breast-cancer table with named columns: its header line is `569,30,malignant,benign`,
/// so the columns are named here (the first two features and the class).
fn breast_cancer() -> (String, Vec<(f64, f64, u8)>) {
    let text = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/breast_cancer.csv"),
    )
    .unwrap();
    let mut csv = String::from("radius,texture,class\n");
    let mut rows = Vec::new();
    for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let cells: Vec<&str> = line.split(',').collect();
        let (radius, texture) = (cells[0].parse().unwrap(), cells[1].parse().unwrap());
        let class: u8 = cells[cells.len() - 1].trim().parse().unwrap();
        csv.push_str(&format!("{radius},{texture},{class}\n"));
        rows.push((radius, texture, class));
    }
    (csv, rows)
}

const RULES: &str = r#"
[[rule]]
name = "large"
label = "malignant"
when = ["radius >= 17"]

[[rule]]
name = "coarse"
label = "malignant"
when = ["texture > 25"]

[[rule]]
name = "small"
label = "benign"
when = ["radius < 12"]
"#;

#[test]
fn rules_label_the_breast_cancer_table_and_the_statistics_match_independent_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let (csv, rows) = breast_cancer();
    assert_eq!(rows.len(), 569);
    let set = ingest_csv(tmp.path(), "cancer", &csv);
    let out = tmp.path().join("labelled");
    let (dataset, labelling) = label_dataset(&set, RULES, "label", &out).unwrap();

    // Counted independently from the table.
    let large = rows.iter().filter(|r| r.0 >= 17.0).count() as u64;
    let coarse = rows.iter().filter(|r| r.1 > 25.0).count() as u64;
    let small = rows.iter().filter(|r| r.0 < 12.0).count() as u64;
    let conflicted = rows.iter().filter(|r| r.0 < 12.0 && r.1 > 25.0).count() as u64;
    let covered = rows.iter().filter(|r| r.0 >= 17.0 || r.1 > 25.0 || r.0 < 12.0).count() as u64;
    // A small coarse tumour is one vote each way: a tie.
    let benign = rows.iter().filter(|r| r.0 < 12.0 && r.1 <= 25.0).count() as u64;
    let malignant = rows.iter().filter(|r| r.0 >= 17.0 || (r.1 > 25.0 && r.0 >= 12.0)).count();
    let stats = &labelling.stats;
    assert_eq!(stats.rows, 569);
    assert_eq!(stats.rules.iter().map(|r| r.fired).collect::<Vec<_>>(), [large, coarse, small]);
    assert_eq!((stats.covered, stats.conflicted, stats.tied), (covered, conflicted, conflicted));
    assert_eq!(stats.labels["benign"], benign);
    assert_eq!(stats.labels["malignant"], malignant as u64);
    assert!(conflicted > 0 && benign > 0 && malignant > 0, "the rules must disagree somewhere");
    // How good the rules are against the real labels (0 = malignant in this table).
    let agree = rows
        .iter()
        .filter(|r| (r.0 >= 17.0 && r.2 == 0) || (r.0 < 12.0 && r.1 <= 25.0 && r.2 == 1))
        .count();
    assert!(agree as f64 > 0.9 * (large + benign) as f64, "{agree}");

    // The labelled data set: every row and column, plus the label; its own digests verify.
    assert_eq!(dataset.rows, 569);
    assert_eq!(dataset.schema.last().unwrap().name, "label");
    assert_eq!(dataset.inputs.len(), 1);
    assert!(dataset.shards.len() >= 6, "shards of at most 100 rows: {}", dataset.shards.len());
    let profiled = profile(&out).unwrap();
    let label = profiled.columns.iter().find(|c| c.name == "label").unwrap();
    assert_eq!(label.missing, 569 - stats.labelled);
    assert_eq!(label.distinct, 2);
    let written: Labelling =
        serde_json::from_slice(&fs::read(out.join(LABELLING_FILE)).unwrap()).unwrap();
    assert_eq!(&written, &labelling);
}

#[test]
fn a_tampered_shard_a_clashing_column_and_bad_rules_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let set = ingest_csv(tmp.path(), "small", "a,label\n1,x\n2,y\n");
    // The label column exists already.
    let error = label_dataset(&set, RULES, "label", &tmp.path().join("o1")).unwrap_err();
    assert!(error.to_string().contains("already has a column \"label\""), "{error}");
    // A rule naming a column the data set does not have: refused before anything is written.
    let out = tmp.path().join("o2");
    let error = label_dataset(&set, RULES, "class", &out).unwrap_err();
    assert!(error.to_string().contains("no column \"radius\""), "{error}");
    assert!(!out.join("dataset.json").exists());
    // A shard altered after ingest.
    let rules = "[[rule]]\nname='big'\nlabel='b'\nwhen=['a > 1']\n";
    let shard = set.join("shard-00000.parquet");
    let mut bytes = fs::read(&shard).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    fs::write(&shard, bytes).unwrap();
    let error = label_dataset(&set, rules, "class", &tmp.path().join("o3")).unwrap_err();
    assert!(error.to_string().contains("digest"), "{error}");
}
