//! Preprocessing real and generated data sets: scikit-learn's breast-cancer table and a raw
//! export with missing values, duplicates, e-mail addresses and phone numbers. Every fitted
//! statistic is checked against one computed here independently, every output value against
//! the transform computed from those statistics; the fitted parameters applied to new data give
//! the same transform, and applied to the same data the same bytes.

// Helpers in integration tests are not #[test] functions; a failed setup should panic loudly.
#![allow(clippy::unwrap_used)]

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray as _;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, RecordBatchReader as _};
use arrow_schema::DataType;
use cloister_data::preprocess::{
    Fitted, PREPROCESSING_FILE, PreprocessOptions, Preprocessing, PseudonymKey, preprocess_dataset,
};
use cloister_data::source::{read_dataset, sha256_hex};
use cloister_data::{IngestOptions, Rejects, Silent, ingest};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use proptest::prelude::*;
use serde_json::{Value as Json, json};

fn ingest_csv(dir: &Path, name: &str, csv: &str, shard_rows: u64) -> PathBuf {
    let input = dir.join(format!("{name}.csv"));
    fs::write(&input, csv).unwrap();
    let out = dir.join(name);
    let options = IngestOptions { shard_rows, ..IngestOptions::default() };
    ingest(&[input], &out, &options, Rejects::refuse(), &Silent).unwrap();
    out
}

/// Every value of column `name` of the data set in `dir`, in order, as JSON (null if missing).
fn column(dir: &Path, name: &str) -> Vec<Json> {
    let dataset = read_dataset(dir).unwrap();
    let mut values = Vec::new();
    for shard in &dataset.shards {
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(File::open(dir.join(&shard.file)).unwrap())
                .unwrap()
                .build()
                .unwrap();
        let index = reader.schema().index_of(name).unwrap();
        for batch in reader {
            let array = batch.unwrap().column(index).clone();
            for row in 0..array.len() {
                values.push(if array.is_null(row) {
                    Json::Null
                } else {
                    match array.data_type() {
                        DataType::Int64 => json!(array.as_primitive::<Int64Type>().value(row)),
                        DataType::Float64 => json!(array.as_primitive::<Float64Type>().value(row)),
                        DataType::Utf8 => json!(array.as_string::<i32>().value(row)),
                        DataType::Boolean => json!(array.as_boolean().value(row)),
                        other => panic!("unexpected type {other}"),
                    }
                });
            }
        }
    }
    values
}

fn floats(values: &[Json]) -> Vec<Option<f64>> {
    values.iter().map(Json::as_f64).collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, variance.sqrt())
}

/// The breast-cancer table's first two features and its class.
fn breast_cancer() -> (String, Vec<(f64, f64, i64)>) {
    let text = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/breast_cancer.csv"),
    )
    .unwrap();
    let mut csv = String::from("radius,texture,class\n");
    let mut rows = Vec::new();
    for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let cells: Vec<&str> = line.split(',').collect();
        let (radius, texture) = (cells[0].parse().unwrap(), cells[1].parse().unwrap());
        let class: i64 = cells[cells.len() - 1].trim().parse().unwrap();
        csv.push_str(&format!("{radius},{texture},{class}\n"));
        rows.push((radius, texture, class));
    }
    (csv, rows)
}

const CANCER_PIPELINE: &str = r#"
version = 1

[[step]]
op = "standardize"
columns = ["radius"]

[[step]]
op = "normalize"
columns = ["texture"]

[[step]]
op = "one_hot"
columns = ["class"]
"#;

#[test]
fn the_breast_cancer_table_is_standardized_normalized_and_encoded_as_computed_independently() {
    let tmp = tempfile::tempdir().unwrap();
    let (csv, rows) = breast_cancer();
    assert_eq!(rows.len(), 569);
    let set = ingest_csv(tmp.path(), "cancer", &csv, 100);
    let out = tmp.path().join("pre");
    let (dataset, preprocessing) =
        preprocess_dataset(&set, CANCER_PIPELINE, &out, PreprocessOptions::default()).unwrap();

    let radius: Vec<f64> = rows.iter().map(|r| r.0).collect();
    let texture: Vec<f64> = rows.iter().map(|r| r.1).collect();
    let (mean, std) = mean_std(&radius);
    let (low, high) = texture.iter().fold((f64::MAX, f64::MIN), |(l, h), t| (l.min(*t), h.max(*t)));
    let Some(Fitted::Standardize { columns }) = &preprocessing.steps[0].fitted else { panic!() };
    assert!(close(columns["radius"].mean, mean) && close(columns["radius"].std, std));
    assert_eq!(columns["radius"].count, 569);
    let Some(Fitted::Normalize { columns }) = &preprocessing.steps[1].fitted else { panic!() };
    assert_eq!((columns["texture"].min, columns["texture"].max), (low, high));
    let Some(Fitted::Categories { columns }) = &preprocessing.steps[2].fitted else { panic!() };
    assert_eq!(columns["class"].categories, ["0", "1"]);

    // Every output value, against the transform of the statistics computed here.
    let z = floats(&column(&out, "radius"));
    for (value, r) in z.iter().zip(&radius) {
        assert!(close(value.unwrap(), (r - mean) / std), "{value:?} {r}");
    }
    let (z_mean, z_std) = mean_std(&z.iter().map(|v| v.unwrap()).collect::<Vec<_>>());
    assert!(z_mean.abs() < 1e-9 && (z_std - 1.0).abs() < 1e-9);
    let scaled = floats(&column(&out, "texture"));
    for (value, t) in scaled.iter().zip(&texture) {
        assert!(close(value.unwrap(), (t - low) / (high - low)));
    }
    let malignant = column(&out, "class=0");
    let benign = column(&out, "class=1");
    for ((m, b), row) in malignant.iter().zip(&benign).zip(&rows) {
        assert_eq!(
            (m.as_i64().unwrap(), b.as_i64().unwrap()),
            (i64::from(row.2 == 0), i64::from(row.2 == 1))
        );
    }

    // The output is a data set like any other; its lineage names the input and the pipeline.
    assert_eq!(dataset.rows, 569);
    assert!(dataset.shards.len() >= 6);
    let names: Vec<&str> = dataset.schema.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["radius", "texture", "class=0", "class=1"]);
    let described = sha256_hex(&fs::read(set.join("dataset.json")).unwrap());
    assert_eq!(dataset.inputs[0].sha256, described);
    let lineage = dataset.lineage.as_ref().unwrap();
    assert_eq!(lineage.pipeline_sha256, sha256_hex(CANCER_PIPELINE.as_bytes()));
    assert_eq!(lineage.fitted_on, described);
    assert_eq!(
        lineage.parameters_sha256,
        sha256_hex(&fs::read(out.join(PREPROCESSING_FILE)).unwrap())
    );
    assert_eq!(lineage.steps.len(), 3);
    assert_eq!(
        serde_json::to_value(read_dataset(&out).unwrap()).unwrap(),
        serde_json::to_value(&dataset).unwrap()
    );
    cloister_data::profile(&out).unwrap();
}

/// A raw export: `id`, `age` (every 7th missing), `city` (every 11th missing), `income`, and
/// `contact` with e-mail addresses and phone numbers; rows 0, 10, 20… are repeated verbatim.
fn raw_export(rows: usize) -> (String, Vec<[Option<String>; 5]>) {
    let cities = ["Oslo", "Lima", "Pune", "Lyon"];
    let mut records = Vec::new();
    for i in 0..rows {
        let age = (i % 7 != 3).then(|| (20 + (i * 13) % 60).to_string());
        let city = (i % 11 != 5).then(|| cities[(i * i) % 4].to_owned());
        let income = format!("{}.5", 1000 + (i * 37) % 900);
        let contact = if i % 2 == 0 {
            format!("  Mail  USER{i}@Example.org ")
        } else {
            format!("call (415) 555-{:04} today", i % 10_000)
        };
        let record = [Some(format!("u{i}")), age, city, Some(income), Some(contact)];
        if i % 10 == 0 {
            records.push(record.clone());
        }
        records.push(record);
    }
    let mut csv = String::from("id,age,city,income,contact\n");
    for record in &records {
        let cells: Vec<&str> = record.iter().map(|c| c.as_deref().unwrap_or("")).collect();
        csv.push_str(&cells.join(","));
        csv.push('\n');
    }
    (csv, records)
}

const RAW_PIPELINE: &str = r#"
version = 1

[[step]]
op = "dedupe"

[[step]]
op = "text_clean"
columns = ["contact"]
lowercase = true

[[step]]
op = "redact"
columns = ["contact"]
pii = ["email", "phone"]
placeholder = "<pii>"

[[step]]
op = "impute"
strategy = "median"
columns = ["age"]

[[step]]
op = "impute"
strategy = "most_frequent"
columns = ["city"]

[[step]]
op = "standardize"
columns = ["income"]

[[step]]
op = "pseudonymize"
columns = ["id"]

[[step]]
op = "split"
seed = 18
train = 0.8
test = 0.2
"#;

fn key() -> PseudonymKey {
    PseudonymKey::new(b"test key: thirty-two bytes long!".to_vec()).unwrap()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 }
}

#[test]
fn a_raw_export_is_deduplicated_cleaned_redacted_imputed_scaled_pseudonymized_and_split() {
    let tmp = tempfile::tempdir().unwrap();
    let (csv, records) = raw_export(400);
    assert_eq!(records.len(), 440);
    let set = ingest_csv(tmp.path(), "raw", &csv, 128);
    let out = tmp.path().join("pre");
    let key = key();
    let options = PreprocessOptions { key: Some(&key), ..PreprocessOptions::default() };
    let (dataset, preprocessing) = preprocess_dataset(&set, RAW_PIPELINE, &out, options).unwrap();

    // Independently: the 40 repeated rows go; the rest keep their order.
    let unique: Vec<&[Option<String>; 5]> = records
        .iter()
        .enumerate()
        .filter(|(i, r)| *i == 0 || records[i - 1] != **r)
        .map(|(_, r)| r)
        .collect();
    assert_eq!(unique.len(), 400);
    assert_eq!(dataset.rows, 400);
    assert_eq!((preprocessing.run.rows_in, preprocessing.run.rows_out), (440, 400));
    assert_eq!(preprocessing.run.steps[0].rows_out, 400);

    let mut ages: Vec<f64> =
        unique.iter().filter_map(|r| r[1].as_ref()).map(|a| a.parse().unwrap()).collect();
    let median_age = median(&mut ages);
    let mut city_counts = std::collections::BTreeMap::new();
    for city in unique.iter().filter_map(|r| r[2].as_ref()) {
        *city_counts.entry(city.clone()).or_insert(0) += 1;
    }
    let top = city_counts.values().max().unwrap();
    let most_frequent = city_counts.iter().find(|(_, n)| *n == top).unwrap().0.clone();
    let incomes: Vec<f64> =
        unique.iter().map(|r| r[3].as_ref().unwrap().parse().unwrap()).collect();
    let (mean, std) = mean_std(&incomes);
    let fitted = &preprocessing.steps;
    let Some(Fitted::Impute { fill }) = &fitted[3].fitted else { panic!() };
    assert_eq!(fill["age"], cloister_data::preprocess::pipeline::Literal::Float(median_age));
    let Some(Fitted::Impute { fill }) = &fitted[4].fitted else { panic!() };
    assert_eq!(
        fill["city"],
        cloister_data::preprocess::pipeline::Literal::Str(most_frequent.clone())
    );
    let Some(Fitted::Standardize { columns }) = &fitted[5].fitted else { panic!() };
    assert!(close(columns["income"].mean, mean) && close(columns["income"].std, std));
    // Fitted before the split: on all 400 rows.
    assert_eq!(fitted[5].fitted_rows, Some(400));

    let age = floats(&column(&out, "age"));
    let city = column(&out, "city");
    let income = floats(&column(&out, "income"));
    let contact = column(&out, "contact");
    let id = column(&out, "id");
    let split = column(&out, "split");
    for (i, record) in unique.iter().enumerate() {
        let expected_age = record[1].as_ref().map_or(median_age, |a| a.parse().unwrap());
        assert_eq!(age[i], Some(expected_age));
        assert_eq!(city[i], json!(record[2].clone().unwrap_or_else(|| most_frequent.clone())));
        let x: f64 = record[3].as_ref().unwrap().parse().unwrap();
        assert!(close(income[i].unwrap(), (x - mean) / std));
        let text = contact[i].as_str().unwrap();
        let expected = if record[4].as_ref().unwrap().contains('@') {
            "mail <pii>"
        } else {
            "call <pii> today"
        };
        assert_eq!(text, expected);
        let token = id[i].as_str().unwrap();
        assert!(token.starts_with("pid_") && token.len() == 20 && !token.contains('u'), "{token}");
    }
    // Pseudonyms are one per id, and the key is nowhere in the output.
    let distinct: std::collections::BTreeSet<&str> =
        id.iter().map(|t| t.as_str().unwrap()).collect();
    assert_eq!(distinct.len(), 400);
    for entry in fs::read_dir(&out).unwrap() {
        let bytes = fs::read(entry.unwrap().path()).unwrap();
        assert!(!bytes.windows(14).any(|w| w == b"thirty-two byt"));
    }
    let train = split.iter().filter(|s| *s == "train").count();
    assert_eq!(train + split.iter().filter(|s| *s == "test").count(), 400);
    assert!((280..=360).contains(&train), "{train}");

    // New data through the fitted parameters: the same median, mode and scale, not refitted.
    let (later_csv, later) = raw_export(23);
    let later_set = ingest_csv(tmp.path(), "later", &later_csv, 10);
    let saved = Preprocessing::from_json(&fs::read(out.join(PREPROCESSING_FILE)).unwrap()).unwrap();
    let applied = tmp.path().join("applied");
    let options =
        PreprocessOptions { key: Some(&key), fitted: Some(&saved), ..PreprocessOptions::default() };
    let (applied_set, applied_run) =
        preprocess_dataset(&later_set, RAW_PIPELINE, &applied, options).unwrap();
    assert_eq!(applied_run.steps, saved.steps);
    assert_eq!(applied_set.lineage.as_ref().unwrap().fitted_on, saved.fitted_on);
    let later_unique: Vec<_> = later
        .iter()
        .enumerate()
        .filter(|(i, r)| *i == 0 || later[i - 1] != **r)
        .map(|(_, r)| r)
        .collect();
    let age = floats(&column(&applied, "age"));
    let income = floats(&column(&applied, "income"));
    let id_later = column(&applied, "id");
    for (i, record) in later_unique.iter().enumerate() {
        assert_eq!(age[i], Some(record[1].as_ref().map_or(median_age, |a| a.parse().unwrap())));
        let x: f64 = record[3].as_ref().unwrap().parse().unwrap();
        assert_eq!(income[i], Some((x - columns["income"].mean) / columns["income"].std));
        // The same id gets the same token in both data sets.
        assert_eq!(id_later[i], id[i]);
    }
}

#[test]
fn refusals_come_before_any_row_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let (csv, _) = raw_export(20);
    let set = ingest_csv(tmp.path(), "raw", &csv, 100);
    let cases = [
        ("[[step]]\nop='select'\ncolumns=['id']\n", "no `version`"),
        ("version = 9\n[[step]]\nop='select'\ncolumns=['id']\n", "newer than this build"),
        ("version = 1\n", "no [[step]]"),
        ("version = 1\n[[step]]\nop='pivot'\n", "unknown variant `pivot`"),
        ("version = 1\n[[step]]\nop='select'\ncolumns=['nope']\n", "no column \"nope\""),
        (
            "version = 1\n[[step]]\nop='impute'\nstrategy='mean'\ncolumns=['city']\n",
            "needs an int or float",
        ),
        ("version = 1\n[[step]]\nop='pseudonymize'\ncolumns=['id']\n", "needs a key"),
        (
            "version = 1\n[[step]]\nop='one_hot'\ncolumns=['city']\n[[step]]\nop='select'\ncolumns=['city']\n",
            "step 2 (select): no column \"city\"",
        ),
    ];
    for (index, (pipeline, expected)) in cases.iter().enumerate() {
        let out = tmp.path().join(format!("out{index}"));
        let error =
            preprocess_dataset(&set, pipeline, &out, PreprocessOptions::default()).unwrap_err();
        assert!(error.to_string().contains(expected), "{pipeline}: {error}");
        assert!(!out.join("dataset.json").exists());
    }
    // A cast that cannot be done names the shard, the row and the column.
    let error = preprocess_dataset(
        &set,
        "version = 1\n[[step]]\nop='cast'\ncolumns={ contact = 'int' }\n",
        &tmp.path().join("cast"),
        PreprocessOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("shard-00000.parquet, row 1, column contact: step 1 (cast)"), "{error}");
    // Fitted parameters of another pipeline are refused.
    let out = tmp.path().join("fitted");
    let (_, fitted) =
        preprocess_dataset(&set, CANCER_ON_RAW, &out, PreprocessOptions::default()).unwrap();
    let other = CANCER_ON_RAW.replace("income", "age");
    let options = PreprocessOptions { fitted: Some(&fitted), ..PreprocessOptions::default() };
    let error = preprocess_dataset(&set, &other, &tmp.path().join("o"), options).unwrap_err();
    assert!(error.to_string().contains("fitted parameters are for pipeline"), "{error}");
}

const CANCER_ON_RAW: &str = "version = 1\n[[step]]\nop = 'standardize'\ncolumns = ['income']\n";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Applying the fitted parameters to the data they were fitted on reproduces the output
    /// byte for byte, whatever the data.
    #[test]
    fn applying_the_fitted_parameters_reproduces_the_output(
        rows in proptest::collection::vec(
            (proptest::option::of(-1000_i64..1000), proptest::option::of(0_u8..5), -50.0_f64..50.0),
            2..60,
        ),
        shard_rows in 1_u64..20,
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let mut csv = String::from("n,tag,x\n");
        for (n, tag, x) in &rows {
            let n = n.map(|n| n.to_string()).unwrap_or_default();
            let tag = tag.map(|t| format!("t{t}")).unwrap_or_default();
            csv.push_str(&format!("{n},{tag},{x}\n"));
        }
        // Make sure the types are what the pipeline expects.
        let input = tmp.path().join("in.csv");
        fs::write(&input, csv).unwrap();
        let set = tmp.path().join("set");
        let mut options = IngestOptions { shard_rows, ..IngestOptions::default() };
        options.overrides.add_argument("n=int").unwrap();
        options.overrides.add_argument("tag=string").unwrap();
        options.overrides.add_argument("x=float").unwrap();
        ingest(&[input], &set, &options, Rejects::refuse(), &Silent).unwrap();
        let pipeline = "version = 1\n\
            [[step]]\nop = 'dedupe'\n\
            [[step]]\nop = 'impute'\nstrategy = 'mean'\ncolumns = ['n']\n\
            [[step]]\nop = 'standardize'\ncolumns = ['n', 'x']\n\
            [[step]]\nop = 'one_hot'\ncolumns = ['tag']\nunknown = 'ignore'\nmax_categories = 3\n\
            [[step]]\nop = 'split'\nseed = 1\ntrain = 0.5\nvalidation = 0.5\n\
            [[step]]\nop = 'normalize'\ncolumns = ['x']\n";
        let first = tmp.path().join("first");
        let fitted = preprocess_dataset(&set, pipeline, &first, PreprocessOptions::default());
        // Every n missing (or x constant) is a refusal to fit, not a wrong output.
        let Ok((fitted_set, fitted)) = fitted else { return Ok(()) };
        let again = tmp.path().join("again");
        let options = PreprocessOptions { fitted: Some(&fitted), ..PreprocessOptions::default() };
        let (applied_set, applied) = preprocess_dataset(&set, pipeline, &again, options).unwrap();
        prop_assert_eq!(&applied, &fitted);
        prop_assert_eq!(&applied_set.shards, &fitted_set.shards);
        for name in ["dataset.json", PREPROCESSING_FILE] {
            prop_assert_eq!(fs::read(first.join(name)).unwrap(), fs::read(again.join(name)).unwrap());
        }
    }
}
