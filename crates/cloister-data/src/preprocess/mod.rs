//! Preprocessing: a declared, versioned pipeline of steps applied to a data set, written as a
//! new data set whose lineage names its input (the SHA-256 of its `dataset.json`), the pipeline
//! (the SHA-256 of the file and each step's canonical digest) and the fitted parameters.
//!
//! ```toml
//! version = 1
//!
//! [[step]]
//! op = "impute"
//! strategy = "median"
//! columns = ["age"]
//!
//! [[step]]
//! op = "standardize"
//! columns = ["age"]
//! ```
//!
//! Steps that need statistics (`impute` but `constant`, `standardize`, `normalize`, `one_hot`,
//! `ordinal`) are *fitted*: each in a streaming pass over the rows as the steps before it leave
//! them (only the `train` rows once a `split` came before it), so a pipeline with N fitted
//! steps reads its input N + 1 times. The last pass applies every step and writes the shards.
//! The fitted parameters go to `preprocessing.json`; given back ([`PreprocessOptions::fitted`])
//! they are applied without refitting, so that new data (at inference) gets the same transform.
//!
//! Memory is bounded: rows are read a batch at a time and written a batch at a time; fitting
//! keeps a few numbers per column, or counts of distinct values for medians, most frequent
//! values and vocabularies (at most [`fit::MAX_DISTINCT`] per column); `dedupe` keeps a 32-byte
//! digest per distinct row (or key) it has seen.

mod apply;
pub mod fit;
pub mod pipeline;
pub mod text;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use self::apply::OTHER_CATEGORY;
use self::apply::{Bound, RowAt, apply_all, bind};
pub use self::fit::Fitted;
use self::fit::Fitter;
pub use self::pipeline::{PIPELINE_VERSION, Pipeline, StepSpec};
pub use self::text::PseudonymKey;
use crate::error::DataError;
use crate::ingest::Dataset;
use crate::label::rows;
use crate::schema::{Field, Value};
use crate::shard::ShardWriter;
use crate::source::{self, DirStore};

/// The file [`preprocess_dataset`] writes beside `dataset.json`.
pub const PREPROCESSING_FILE: &str = "preprocessing.json";
/// The version of the `preprocessing.json` layout.
pub const PREPROCESSING_VERSION: u32 = 1;

/// One step of `preprocessing.json`: its op, its canonical digest and what was fitted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepRecord {
    /// The step's `op`.
    pub op: String,
    /// SHA-256 of the step's canonical form ([`StepSpec::sha256`]).
    pub sha256: String,
    /// The fitted parameters, for a fitted step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fitted: Option<Fitted>,
    /// The rows they were fitted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fitted_rows: Option<u64>,
}

/// What one step did in the run that wrote the data set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepRun {
    /// The step's `op`.
    pub op: String,
    /// Rows that reached it.
    pub rows_in: u64,
    /// Rows it handed on (fewer after `filter` and `dedupe`).
    pub rows_out: u64,
    /// Values it changed.
    pub changed: u64,
}

/// The run that wrote the data set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Run {
    /// SHA-256 of the input's `dataset.json`.
    pub input_sha256: String,
    /// Rows read.
    pub rows_in: u64,
    /// Rows written.
    pub rows_out: u64,
    /// Per step, in order.
    pub steps: Vec<StepRun>,
}

/// `preprocessing.json`: the pipeline's digests, the fitted parameters and what the run did.
/// Given back with [`PreprocessOptions::fitted`], its parameters are applied as they are.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preprocessing {
    /// [`PREPROCESSING_VERSION`].
    pub version: u32,
    /// SHA-256 of the pipeline file.
    pub pipeline_sha256: String,
    /// SHA-256 of the `dataset.json` of the data set the parameters were fitted on.
    pub fitted_on: String,
    /// Per step, in order.
    pub steps: Vec<StepRecord>,
    /// What this run did.
    pub run: Run,
}

impl Preprocessing {
    /// Parses a `preprocessing.json`.
    pub fn from_json(bytes: &[u8]) -> Result<Self, DataError> {
        let parsed: Preprocessing = serde_json::from_slice(bytes)
            .map_err(|e| DataError::Pipeline(format!("the fitted parameters: {e}")))?;
        if parsed.version != PREPROCESSING_VERSION {
            return Err(DataError::Pipeline(format!(
                "the fitted parameters are version {} (this build reads {PREPROCESSING_VERSION})",
                parsed.version
            )));
        }
        Ok(parsed)
    }

    /// The fitted parameters per step of `pipeline`, which must be the pipeline they were
    /// fitted for (same file digest, same steps).
    fn parameters_for(&self, pipeline: &Pipeline) -> Result<Vec<Option<(Fitted, u64)>>, DataError> {
        if self.pipeline_sha256 != pipeline.sha256 || self.steps.len() != pipeline.steps.len() {
            return Err(DataError::Pipeline(format!(
                "the fitted parameters are for pipeline {}, not this one ({})",
                self.pipeline_sha256, pipeline.sha256
            )));
        }
        let mut parameters = Vec::new();
        for (index, (record, spec)) in self.steps.iter().zip(&pipeline.steps).enumerate() {
            if record.sha256 != spec.sha256() {
                return Err(pipeline::step_error(
                    index,
                    spec.op(),
                    "the fitted parameters are for another step",
                ));
            }
            let fitted = record.fitted.clone().map(|f| (f, record.fitted_rows.unwrap_or(0)));
            if spec.needs_fitting() && fitted.is_none() {
                return Err(pipeline::step_error(index, spec.op(), "no fitted parameters"));
            }
            parameters.push(fitted);
        }
        Ok(parameters)
    }
}

/// One step's digest in a data set's lineage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepDigest {
    /// The step's `op`.
    pub op: String,
    /// SHA-256 of its canonical form.
    pub sha256: String,
}

/// How a preprocessed data set was made (in its `dataset.json`; its one input is the source
/// data set, by the SHA-256 of that `dataset.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lineage {
    /// `preprocess`.
    pub transform: String,
    /// SHA-256 of the pipeline file.
    pub pipeline_sha256: String,
    /// The steps, in order.
    pub steps: Vec<StepDigest>,
    /// The file beside `dataset.json` with the fitted parameters.
    pub parameters: String,
    /// Its SHA-256.
    pub parameters_sha256: String,
    /// SHA-256 of the `dataset.json` the parameters were fitted on (the input's, unless they
    /// were given).
    pub fitted_on: String,
}

/// Progress of the passes, for a progress bar.
pub trait PassProgress {
    /// A pass over `rows` rows starts; `what` says which.
    fn pass(&self, _what: &str, _rows: u64) {}
    /// Rows of the current pass read so far.
    fn rows(&self, _done: u64) {}
}

impl PassProgress for crate::ingest::Silent {}

/// How to preprocess.
#[derive(Clone, Copy)]
pub struct PreprocessOptions<'a> {
    /// The key of `pseudonymize` steps (refused without one).
    pub key: Option<&'a PseudonymKey>,
    /// Parameters fitted before (a `preprocessing.json`), applied without refitting.
    pub fitted: Option<&'a Preprocessing>,
    /// Where progress goes.
    pub progress: &'a dyn PassProgress,
}

impl Default for PreprocessOptions<'_> {
    fn default() -> Self {
        Self { key: None, fitted: None, progress: &crate::ingest::Silent }
    }
}

/// Binds `specs` (the first `specs.len()` steps) to the input's `fields`.
fn bind_all(
    specs: &[StepSpec],
    fields: &[Field],
    parameters: &[Option<(Fitted, u64)>],
    key: Option<&PseudonymKey>,
) -> Result<(Vec<Bound>, Vec<Field>), DataError> {
    let mut fields = fields.to_vec();
    let mut bound = Vec::with_capacity(specs.len());
    for (index, spec) in specs.iter().enumerate() {
        let fitted = parameters.get(index).and_then(Option::as_ref).map(|(f, _)| f);
        let (step, next) = bind(index, spec, &fields, fitted, key)?;
        bound.push(step);
        fields = next;
    }
    Ok((bound, fields))
}

/// Checks every step against the columns that will reach it, before a row is read: with
/// placeholder parameters for steps still to be fitted, up to the first unfitted `one_hot`
/// (whose columns come from its vocabulary; the steps after it are checked once it is fitted).
fn check(
    pipeline: &Pipeline,
    fields: &[Field],
    parameters: &[Option<(Fitted, u64)>],
    key: Option<&PseudonymKey>,
) -> Result<(), DataError> {
    let mut fields = fields.to_vec();
    for (index, spec) in pipeline.steps.iter().enumerate() {
        let fitted = parameters.get(index).and_then(Option::as_ref).map(|(f, _)| f);
        if spec.needs_fitting() && fitted.is_none() {
            Fitter::new(index, spec, &fields)?;
            if matches!(spec, StepSpec::OneHot { .. }) {
                return Ok(());
            }
        }
        fields = bind(index, spec, &fields, fitted, key)?.1;
    }
    Ok(())
}

/// Rows read between progress reports.
const PROGRESS_EVERY: u64 = 16_384;

/// Reads every row of the data set through `steps`; `sink` gets each row that comes out, and
/// whether `split` held it out of train. Returns the rows read.
fn pass(
    dir: &Path,
    source: &Dataset,
    steps: &mut [Bound],
    progress: &dyn PassProgress,
    mut sink: impl FnMut(&[Value], bool) -> Result<(), DataError>,
) -> Result<u64, DataError> {
    let mut read = 0;
    let mut shard_name = String::new();
    let mut shard_path = String::new();
    let mut in_shard = 0;
    crate::profile::read_shards_named(dir, source, |shard, batch| {
        if shard.file != shard_name {
            shard_name.clone_from(&shard.file);
            shard_path = dir.join(&shard.file).display().to_string();
            in_shard = 0;
        }
        for mut row in rows(batch, &source.schema) {
            read += 1;
            in_shard += 1;
            let at = RowAt { shard: &shard_path, row: in_shard };
            if let Some(held_out) = apply_all(steps, &mut row, &at)? {
                sink(&row, held_out)?;
            }
            if read % PROGRESS_EVERY == 0 {
                progress.rows(read);
            }
        }
        Ok(())
    })?;
    progress.rows(read);
    if read != source.rows {
        return Err(DataError::Dataset(format!(
            "the shards hold {read} rows, dataset.json says {}",
            source.rows
        )));
    }
    Ok(read)
}

/// Preprocesses the data set in `dir` with the pipeline in `pipeline_toml` into a new data set
/// in `out` (new or empty), with [`PREPROCESSING_FILE`] beside its `dataset.json`. Every step
/// is checked against the data set's columns before a row is read; every shard's digest is
/// checked each time it is read.
pub fn preprocess_dataset(
    dir: &Path,
    pipeline_toml: &str,
    out: &Path,
    options: PreprocessOptions<'_>,
) -> Result<(Dataset, Preprocessing), DataError> {
    let (source, described) = source::read_dataset_with_digest(dir)?;
    let pipeline = Pipeline::parse(pipeline_toml)?;
    let (mut parameters, fitted_on) = match options.fitted {
        Some(fitted) => (fitted.parameters_for(&pipeline)?, fitted.fitted_on.clone()),
        None => (vec![None; pipeline.steps.len()], described.clone()),
    };
    check(&pipeline, &source.schema, &parameters, options.key)?;
    let store = DirStore::create(out)?;

    // Fit each step that needs it on what the steps before it hand on.
    while let Some(index) = pipeline
        .steps
        .iter()
        .zip(&parameters)
        .position(|(spec, fitted)| spec.needs_fitting() && fitted.is_none())
    {
        let spec =
            pipeline.steps.get(index).ok_or_else(|| DataError::Pipeline("no step".into()))?;
        let (mut prefix, fields) =
            bind_all(&pipeline.steps[..index], &source.schema, &parameters, options.key)?;
        let mut fitter = Fitter::new(index, spec, &fields)?;
        options.progress.pass(&format!("fitting step {} ({})", index + 1, spec.op()), source.rows);
        pass(dir, &source, &mut prefix, options.progress, |row, held_out| {
            if held_out { Ok(()) } else { fitter.add(row) }
        })?;
        let rows = fitter.rows();
        if let Some(slot) = parameters.get_mut(index) {
            *slot = Some((fitter.finish()?, rows));
        }
    }

    let (mut steps, fields) = bind_all(&pipeline.steps, &source.schema, &parameters, options.key)?;
    let shard_rows = source.shards.iter().map(|s| s.rows).max().unwrap_or(1).max(1);
    let mut sink = ShardWriter::new(store, &fields, shard_rows);
    options.progress.pass("applying the pipeline", source.rows);
    let rows_in = pass(dir, &source, &mut steps, options.progress, |row, _| sink.push(row))?;
    let rows_out = sink.rows();
    let (shards, columns, _) = sink.finish()?;

    let records = pipeline
        .steps
        .iter()
        .zip(parameters)
        .map(|(spec, fitted)| StepRecord {
            op: spec.op().to_owned(),
            sha256: spec.sha256(),
            fitted_rows: fitted.as_ref().map(|(_, rows)| *rows),
            fitted: fitted.map(|(f, _)| f),
        })
        .collect();
    let run = Run {
        input_sha256: described.clone(),
        rows_in,
        rows_out,
        steps: pipeline
            .steps
            .iter()
            .zip(&steps)
            .map(|(spec, step)| StepRun {
                op: spec.op().to_owned(),
                rows_in: step.rows_in,
                rows_out: step.rows_out,
                changed: step.changed,
            })
            .collect(),
    };
    let preprocessing = Preprocessing {
        version: PREPROCESSING_VERSION,
        pipeline_sha256: pipeline.sha256.clone(),
        fitted_on: fitted_on.clone(),
        steps: records,
        run,
    };
    let parameters_sha256 = source::write_json(out, PREPROCESSING_FILE, &preprocessing)?;
    let lineage = Lineage {
        transform: "preprocess".into(),
        pipeline_sha256: pipeline.sha256.clone(),
        steps: pipeline
            .steps
            .iter()
            .map(|s| StepDigest { op: s.op().to_owned(), sha256: s.sha256() })
            .collect(),
        parameters: PREPROCESSING_FILE.into(),
        parameters_sha256,
        fitted_on,
    };
    let dataset =
        Dataset::derived(&source, dir, described, fields, rows_out, shards, columns, Some(lineage));
    source::write_dataset(out, &dataset)?;
    Ok((dataset, preprocessing))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::ColumnType;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    /// The fitted parameters per step, with the rows each was fitted on.
    type Parameters = Vec<Option<(Fitted, u64)>>;
    /// Where [`run`] hands the rows that come out of the steps.
    type Sink<'s> = dyn FnMut(&[Value], bool) -> Result<(), DataError> + 's;
    /// The output columns, the output rows and the parameters.
    type Output = (Vec<Field>, Vec<Vec<Value>>, Parameters);

    fn field(name: &str, ty: ColumnType) -> Field {
        Field { name: name.into(), ty }
    }

    fn s(text: &str) -> Value {
        Value::Str(text.into())
    }

    /// The passes of [`preprocess_dataset`] over rows in memory: the output columns and rows,
    /// and the parameters.
    fn run(
        steps: &str,
        fields: &[Field],
        input: &[Vec<Value>],
        key: Option<&[u8]>,
    ) -> Result<Output, DataError> {
        let pipeline = Pipeline::parse(&format!("version = 1\n{steps}"))?;
        let key = key.map(|k| PseudonymKey::new(k.to_vec()).unwrap());
        let mut parameters = vec![None; pipeline.steps.len()];
        check(&pipeline, fields, &parameters, key.as_ref())?;
        let through = |steps: &mut [Bound], sink: &mut Sink<'_>| {
            for (index, row) in input.iter().enumerate() {
                let mut row = row.clone();
                let at = RowAt { shard: "mem", row: index as u64 + 1 };
                if let Some(held_out) = apply_all(steps, &mut row, &at)? {
                    sink(&row, held_out)?;
                }
            }
            Ok::<_, DataError>(())
        };
        while let Some(index) = pipeline
            .steps
            .iter()
            .zip(&parameters)
            .position(|(spec, fitted)| spec.needs_fitting() && fitted.is_none())
        {
            let (mut prefix, prefix_fields) =
                bind_all(&pipeline.steps[..index], fields, &parameters, key.as_ref())?;
            let mut fitter = Fitter::new(index, &pipeline.steps[index], &prefix_fields)?;
            through(&mut prefix, &mut |row, held_out| {
                if held_out { Ok(()) } else { fitter.add(row) }
            })?;
            let rows = fitter.rows();
            parameters[index] = Some((fitter.finish()?, rows));
        }
        let (mut bound, out_fields) = bind_all(&pipeline.steps, fields, &parameters, key.as_ref())?;
        let mut out = Vec::new();
        through(&mut bound, &mut |row, _| {
            out.push(row.to_vec());
            Ok(())
        })?;
        Ok((out_fields, out, parameters))
    }

    fn table() -> (Vec<Field>, Vec<Vec<Value>>) {
        let fields = vec![
            field("id", ColumnType::String),
            field("age", ColumnType::Int),
            field("score", ColumnType::Float),
            field("city", ColumnType::String),
        ];
        let rows = vec![
            vec![s("a"), Value::Int(30), Value::Float(1.0), s("Oslo")],
            vec![s("b"), Value::Null, Value::Float(3.0), s("Lima")],
            vec![s("c"), Value::Int(50), Value::Null, s("Oslo")],
            vec![s("a"), Value::Int(30), Value::Float(1.0), s("Oslo")],
            vec![s("d"), Value::Int(40), Value::Float(5.0), Value::Null],
        ];
        (fields, rows)
    }

    fn error(steps: &str, key: Option<&[u8]>) -> String {
        let (fields, rows) = table();
        run(steps, &fields, &rows, key).unwrap_err().to_string()
    }

    #[test]
    fn select_rename_and_cast_reshape_the_columns() {
        let (fields, rows) = table();
        let (out, values, _) = run(
            "[[step]]\nop='select'\ncolumns=['age','id']\n\
             [[step]]\nop='rename'\ncolumns={ age = 'years' }\n\
             [[step]]\nop='cast'\ncolumns={ years = 'string' }\n",
            &fields,
            &rows,
            None,
        )
        .unwrap();
        assert_eq!(out, [field("years", ColumnType::String), field("id", ColumnType::String)]);
        assert_eq!(values[0], [s("30"), s("a")]);
        assert_eq!(values[1], [Value::Null, s("b")]);
    }

    #[test]
    fn an_impossible_cast_names_the_row_and_column_or_becomes_missing() {
        let message = error("[[step]]\nop='cast'\ncolumns={ city = 'int' }\n", None);
        assert!(message.starts_with("mem, row 1, column city: step 1 (cast)"), "{message}");
        assert!(message.contains("\"Oslo\""), "{message}");
        let (fields, rows) = table();
        let (_, values, _) = run(
            "[[step]]\nop='cast'\ncolumns={ city = 'int', score = 'int' }\non_error='missing'\n",
            &fields,
            &rows,
            None,
        )
        .unwrap();
        assert_eq!(values[0][2], Value::Int(1));
        assert_eq!(values[0][3], Value::Null);
        // 2.5 is not a whole number: missing too.
        let (_, values, _) = run(
            "[[step]]\nop='cast'\ncolumns={ score = 'int' }\non_error='missing'\n",
            &fields,
            &[vec![s("x"), Value::Null, Value::Float(2.5), Value::Null]],
            None,
        )
        .unwrap();
        assert_eq!(values[0][2], Value::Null);
    }

    #[test]
    fn filter_uses_the_rule_conditions() {
        let (fields, rows) = table();
        let (_, values, _) = run(
            "[[step]]\nop='filter'\nwhen=['age >= 35', \"city ~ '^O'\"]\n",
            &fields,
            &rows,
            None,
        )
        .unwrap();
        assert_eq!(values.len(), 1);
        assert_eq!(values[0][0], s("c"));
        let message = error("[[step]]\nop='filter'\nwhen=['pulse > 1']\n", None);
        assert!(message.contains("step 1 (filter): no column \"pulse\""), "{message}");
    }

    #[test]
    fn impute_fills_with_fitted_or_constant_values() {
        let (fields, rows) = table();
        let (out, values, parameters) = run(
            "[[step]]\nop='impute'\nstrategy='mean'\ncolumns=['age']\n\
             [[step]]\nop='impute'\nstrategy='constant'\ncolumns=['city']\nvalue='unknown'\n\
             [[step]]\nop='impute'\nstrategy='median'\ncolumns=['score']\n",
            &fields,
            &rows,
            None,
        )
        .unwrap();
        // (30 + 50 + 30 + 40) / 4; the int column becomes float.
        assert_eq!(out[1], field("age", ColumnType::Float));
        assert_eq!(values[1][1], Value::Float(37.5));
        assert_eq!(values[0][1], Value::Float(30.0));
        assert_eq!(values[4][3], s("unknown"));
        // Median of 1, 3, 1, 5.
        assert_eq!(values[2][2], Value::Float(2.0));
        assert_eq!(parameters[0].as_ref().map(|(_, rows)| *rows), Some(5));
        assert!(parameters[1].is_none(), "a constant is not fitted");
        for (steps, expected) in [
            (
                "[[step]]\nop='impute'\nstrategy='mean'\ncolumns=['city']\n",
                "step 1 (impute): column \"city\" is string: strategy \"mean\" needs an int",
            ),
            (
                "[[step]]\nop='impute'\nstrategy='constant'\ncolumns=['age']\nvalue='x'\n",
                "does not fit column \"age\" (int)",
            ),
            ("[[step]]\nop='standardize'\ncolumns=['nope']\n", "no column \"nope\""),
        ] {
            let message = error(steps, None);
            assert!(message.contains(expected), "{message}");
        }
    }

    #[test]
    fn standardize_and_normalize_use_the_fitted_statistics() {
        let (fields, rows) = table();
        let (out, values, _) = run(
            "[[step]]\nop='standardize'\ncolumns=['score']\n\
             [[step]]\nop='normalize'\ncolumns=['age']\n",
            &fields,
            &rows,
            None,
        )
        .unwrap();
        // score 1, 3, 1, 5: mean 2.5, population std sqrt(2.75).
        let std = 2.75_f64.sqrt();
        assert_eq!(values[0][2], Value::Float((1.0 - 2.5) / std));
        assert_eq!(values[2][2], Value::Null);
        // age 30..50.
        assert_eq!(values[0][1], Value::Float(0.0));
        assert_eq!(values[2][1], Value::Float(1.0));
        assert_eq!(values[4][1], Value::Float(0.5));
        assert_eq!(out[1].ty, ColumnType::Float);
    }

    #[test]
    fn one_hot_and_ordinal_encode_with_a_cap_and_an_unknown_policy() {
        let (fields, rows) = table();
        let (out, values, _) =
            run("[[step]]\nop='one_hot'\ncolumns=['city']\n", &fields, &rows, None).unwrap();
        let names: Vec<&str> = out.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["id", "age", "score", "city=Lima", "city=Oslo"]);
        assert_eq!(values[0][3..], [Value::Int(0), Value::Int(1)]);
        assert_eq!(values[1][3..], [Value::Int(1), Value::Int(0)]);
        assert_eq!(values[4][3..], [Value::Null, Value::Null]);
        // A cap of one keeps Oslo (3 rows); Lima is "other".
        let (out, values, _) = run(
            "[[step]]\nop='one_hot'\ncolumns=['city']\nmax_categories=1\nunknown='other'\n",
            &fields,
            &rows,
            None,
        )
        .unwrap();
        assert_eq!(out[4].name, "city=__other__");
        assert_eq!(values[1][3..], [Value::Int(0), Value::Int(1)]);
        let message = error("[[step]]\nop='one_hot'\ncolumns=['city']\nmax_categories=1\n", None);
        assert!(message.contains("2 categories, more than max_categories 1"), "{message}");
        let (out, values, _) = run(
            "[[step]]\nop='ordinal'\ncolumns=['city', 'id']\nmax_categories=2\nunknown='ignore'\n",
            &fields,
            &rows,
            None,
        )
        .unwrap();
        assert_eq!(out[3].ty, ColumnType::Int);
        assert_eq!((values[0][3].clone(), values[1][3].clone()), (Value::Int(1), Value::Int(0)));
        // ids: a twice, then b, c, d once: a and b kept; c is unknown, ignored.
        assert_eq!(values[1][0], Value::Int(1));
        assert_eq!(values[2][0], Value::Null);
    }

    #[test]
    fn text_clean_dedupe_redact_and_pseudonymize() {
        let fields = vec![field("who", ColumnType::String), field("note", ColumnType::String)];
        let rows = vec![
            vec![s("p1"), s("  Call  ANN@example.org\u{7} ")],
            vec![s("p2"), s("ring +44 20 7946 0958")],
            vec![s("p1"), s("call ann@example.org")],
            vec![s("p2"), s("ring +44 20 7946 0958")],
        ];
        let (_, values, _) = run(
            "[[step]]\nop='text_clean'\ncolumns=['note']\nlowercase=true\n\
             [[step]]\nop='dedupe'\n\
             [[step]]\nop='redact'\ncolumns=['note']\npii=['email','phone']\nplaceholder='<pii>'\n\
             [[step]]\nop='pseudonymize'\ncolumns=['who']\nprefix='x_'\nlength=8\n",
            &fields,
            &rows,
            Some(KEY),
        )
        .unwrap();
        // Cleaning made rows 1 and 3 equal; dedupe kept the first of each.
        assert_eq!(values.len(), 2);
        assert_eq!(values[0][1], s("call <pii>"));
        assert_eq!(values[1][1], s("ring <pii>"));
        let Value::Str(token) = &values[0][0] else { panic!("not a string") };
        assert!(token.starts_with("x_") && token.len() == 10 && !token.contains("p1"));
        // Dedupe by key: one row per person.
        let (_, values, _) =
            run("[[step]]\nop='dedupe'\ncolumns=['who']\n", &fields, &rows, None).unwrap();
        assert_eq!(values.len(), 2);
        let message = error("[[step]]\nop='pseudonymize'\ncolumns=['id']\n", None);
        assert!(message.contains("step 1 (pseudonymize): needs a key"), "{message}");
        let message = error("[[step]]\nop='text_clean'\ncolumns=['age']\n", None);
        assert!(message.contains("column \"age\" is int: it needs a string column"), "{message}");
    }

    #[test]
    fn split_is_seeded_stable_per_row_and_fitting_after_it_sees_only_train() {
        let fields = vec![field("n", ColumnType::Int)];
        let rows: Vec<Vec<Value>> = (0..2000).map(|i| vec![Value::Int(i)]).collect();
        let steps = "[[step]]\nop='split'\nseed=7\ntrain=0.7\nvalidation=0.2\ntest=0.1\n\
                     [[step]]\nop='normalize'\ncolumns=['n']\n";
        let (out, values, parameters) = run(steps, &fields, &rows, None).unwrap();
        assert_eq!(out[1], field("split", ColumnType::String));
        let count = |name: &str| values.iter().filter(|r| r[1] == s(name)).count();
        assert!((1300..1500).contains(&count("train")), "{}", count("train"));
        assert!((320..480).contains(&count("validation")), "{}", count("validation"));
        assert_eq!(count("train") + count("validation") + count("test"), 2000);
        // Fitted on train rows only.
        assert_eq!(parameters[1].as_ref().map(|(_, rows)| *rows), Some(count("train") as u64));
        // The same rows reversed get the same splits; another seed gives others.
        let reversed: Vec<Vec<Value>> = rows.iter().rev().cloned().collect();
        let (_, again, _) = run(steps, &fields, &reversed, None).unwrap();
        let first: Vec<&Value> = values.iter().map(|r| &r[1]).collect();
        let second: Vec<&Value> = again.iter().rev().map(|r| &r[1]).collect();
        assert_eq!(first, second);
        let (_, other, _) = run(&steps.replace("seed=7", "seed=8"), &fields, &rows, None).unwrap();
        assert_ne!(values, other);
        let message = error("[[step]]\nop='split'\nseed=1\ntrain=1.0\ncolumn='id'\n", None);
        assert!(message.contains("there is a column \"id\" already"), "{message}");
    }
}
