//! The pipeline file: `version = 1` and `[[step]]` tables with `op = "..."`, parsed strictly
//! (a missing or newer version, an unknown op and an unknown key are refused by name), and each
//! step's canonical digest: the SHA-256 of its JSON form with every default filled in.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::DataError;
use crate::schema::ColumnType;
use crate::source::sha256_hex;

/// The pipeline file version this build reads.
pub const PIPELINE_VERSION: i64 = 1;

/// The pipeline file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PipelineFile {
    version: Option<i64>,
    #[serde(default)]
    step: Vec<StepSpec>,
}

/// What to do with a value a `cast` cannot convert.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Stop with an error naming the shard, row and column.
    #[default]
    Error,
    /// Make the value missing (counted as changed).
    Missing,
}

/// How `impute` fills missing values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The mean of the column's values (int and float columns; the column becomes float).
    Mean,
    /// The median (the mean of the two middle values for an even count; int and float
    /// columns; the column becomes float).
    Median,
    /// The most frequent value (any type; ties go to the smallest value).
    MostFrequent,
    /// The step's `value`, which must fit the column's type.
    Constant,
}

/// What an encoder does with a category it was not fitted with (or that fell beyond
/// `max_categories`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unknown {
    /// Stop with an error naming the shard, row and column.
    #[default]
    Error,
    /// `one_hot`: every indicator 0; `ordinal`: the code is missing.
    Ignore,
    /// `one_hot`: an extra `COLUMN=__other__` indicator; `ordinal`: the code after the last.
    Other,
}

/// A built-in personal-data pattern for `redact` (those of the profile's detector that are
/// patterns: person names are found by a word list and cannot be redacted this way).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiPattern {
    /// E-mail addresses.
    Email,
    /// Phone numbers.
    Phone,
    /// US social security numbers.
    UsSsn,
    /// IBANs with a valid checksum.
    Iban,
    /// Payment card numbers with a valid Luhn digit.
    CreditCard,
}

/// A literal in a pipeline or in fitted parameters: a TOML or JSON scalar.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Literal {
    /// `true` or `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
}

fn default_max_categories() -> usize {
    100
}

fn yes() -> bool {
    true
}

fn default_placeholder() -> String {
    "[REDACTED]".into()
}

fn default_prefix() -> String {
    "pid_".into()
}

fn default_length() -> usize {
    16
}

fn default_split_column() -> String {
    "split".into()
}

/// One step as declared, defaults filled in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum StepSpec {
    /// Keep these columns, in this order.
    Select {
        /// The columns.
        columns: Vec<String>,
    },
    /// Rename columns: old name → new name.
    Rename {
        /// The renames.
        columns: BTreeMap<String, String>,
    },
    /// Convert columns to another type.
    Cast {
        /// Column → its new type.
        columns: BTreeMap<String, ColumnType>,
        /// What an impossible conversion does.
        #[serde(default)]
        on_error: OnError,
    },
    /// Keep the rows where every condition holds (the label rules' syntax).
    Filter {
        /// The conditions.
        when: Vec<String>,
    },
    /// Fill missing values.
    Impute {
        /// How.
        strategy: Strategy,
        /// The columns.
        columns: Vec<String>,
        /// The value, for `constant`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<Literal>,
    },
    /// z-score: (x − mean) / standard deviation (population), fitted.
    Standardize {
        /// Int or float columns; they become float.
        columns: Vec<String>,
    },
    /// Min-max scaling to [0, 1] over the fitted range.
    Normalize {
        /// Int or float columns; they become float.
        columns: Vec<String>,
    },
    /// One 0/1 int column per category, `COLUMN=CATEGORY`, in place of the column.
    OneHot {
        /// String, int or bool columns.
        columns: Vec<String>,
        /// The most frequent categories kept per column.
        #[serde(default = "default_max_categories")]
        max_categories: usize,
        /// What an unknown category does.
        #[serde(default)]
        unknown: Unknown,
    },
    /// The category's position in the sorted vocabulary, as an int.
    Ordinal {
        /// String, int or bool columns.
        columns: Vec<String>,
        /// The most frequent categories kept per column.
        #[serde(default = "default_max_categories")]
        max_categories: usize,
        /// What an unknown category does.
        #[serde(default)]
        unknown: Unknown,
    },
    /// Clean text: Unicode NFC, control characters out, whitespace trimmed and collapsed,
    /// optionally lowercase.
    TextClean {
        /// String columns.
        columns: Vec<String>,
        /// Lowercase (Unicode).
        #[serde(default)]
        lowercase: bool,
        /// Trim, and collapse runs of whitespace to one space.
        #[serde(default = "yes")]
        whitespace: bool,
        /// Remove control characters and invisible bidirectional/zero-width characters.
        #[serde(default = "yes")]
        control: bool,
        /// Unicode normalisation form C.
        #[serde(default = "yes")]
        nfc: bool,
    },
    /// Drop repeated rows, keeping the first: equal in every column, or in the key columns.
    Dedupe {
        /// The key columns; empty: all.
        #[serde(default)]
        columns: Vec<String>,
    },
    /// Replace personal data, matches of regular expressions and whole values with a
    /// placeholder.
    Redact {
        /// String columns.
        columns: Vec<String>,
        /// Built-in patterns.
        #[serde(default)]
        pii: Vec<PiiPattern>,
        /// Regular expressions (Rust `regex` syntax).
        #[serde(default)]
        regex: Vec<String>,
        /// Whole values to replace.
        #[serde(default)]
        values: Vec<String>,
        /// The replacement.
        #[serde(default = "default_placeholder")]
        placeholder: String,
    },
    /// Replace values with keyed tokens: `PREFIX` + the first `length` hex digits of
    /// HMAC-SHA-256(key, value).
    Pseudonymize {
        /// Columns of any type; they become string.
        columns: Vec<String>,
        /// The tokens' prefix.
        #[serde(default = "default_prefix")]
        prefix: String,
        /// Hex digits kept (8 to 64).
        #[serde(default = "default_length")]
        length: usize,
    },
    /// Assign each row to train, validation or test by a seeded hash of the row (or of the
    /// `by` columns): deterministic for a seed, stable per row.
    Split {
        /// The seed.
        seed: u64,
        /// Share of train rows.
        #[serde(default)]
        train: f64,
        /// Share of validation rows.
        #[serde(default)]
        validation: f64,
        /// Share of test rows.
        #[serde(default)]
        test: f64,
        /// The column added.
        #[serde(default = "default_split_column")]
        column: String,
        /// The columns hashed; empty: all.
        #[serde(default)]
        by: Vec<String>,
    },
}

impl StepSpec {
    /// The step's `op`.
    pub fn op(&self) -> &'static str {
        match self {
            Self::Select { .. } => "select",
            Self::Rename { .. } => "rename",
            Self::Cast { .. } => "cast",
            Self::Filter { .. } => "filter",
            Self::Impute { .. } => "impute",
            Self::Standardize { .. } => "standardize",
            Self::Normalize { .. } => "normalize",
            Self::OneHot { .. } => "one_hot",
            Self::Ordinal { .. } => "ordinal",
            Self::TextClean { .. } => "text_clean",
            Self::Dedupe { .. } => "dedupe",
            Self::Redact { .. } => "redact",
            Self::Pseudonymize { .. } => "pseudonymize",
            Self::Split { .. } => "split",
        }
    }

    /// Whether the step's parameters are fitted on the data in a pass of their own.
    pub fn needs_fitting(&self) -> bool {
        match self {
            Self::Impute { strategy, .. } => *strategy != Strategy::Constant,
            Self::Standardize { .. }
            | Self::Normalize { .. }
            | Self::OneHot { .. }
            | Self::Ordinal { .. } => true,
            _ => false,
        }
    }

    /// SHA-256 of the step's canonical form: its JSON with every default filled in (keys of
    /// maps sorted), so that two spellings of one step have one digest.
    pub fn sha256(&self) -> String {
        // Serialising plain data (strings, numbers, maps with string keys) cannot fail.
        let json = serde_json::to_vec(self).unwrap_or_default();
        sha256_hex(&json)
    }
}

/// A parsed pipeline: its steps and the SHA-256 of the file.
#[derive(Clone, Debug, PartialEq)]
pub struct Pipeline {
    /// The steps, in order.
    pub steps: Vec<StepSpec>,
    /// SHA-256 of the pipeline file's bytes, hex.
    pub sha256: String,
}

/// An error about step `index` (0-based; shown 1-based with its op).
pub(crate) fn step_error(index: usize, op: &str, reason: impl std::fmt::Display) -> DataError {
    DataError::Pipeline(format!("step {} ({op}): {reason}", index + 1))
}

impl Pipeline {
    /// Parses a pipeline file: `version = 1` first, then `[[step]]` tables. A missing or other
    /// version, an unknown `op` or key, and an empty pipeline are refused; so is a step whose
    /// own settings are inconsistent (checks against a data set's columns come later).
    pub fn parse(toml: &str) -> Result<Pipeline, DataError> {
        let file: PipelineFile = ::toml::from_str(toml)
            .map_err(|e| DataError::Pipeline(format!("the pipeline file: {e}")))?;
        match file.version {
            None => {
                return Err(DataError::Pipeline(format!(
                    "the pipeline file has no `version` (this build reads version \
                     {PIPELINE_VERSION}: write `version = {PIPELINE_VERSION}` first)"
                )));
            }
            Some(PIPELINE_VERSION) => {}
            Some(version) if version > PIPELINE_VERSION => {
                return Err(DataError::Pipeline(format!(
                    "the pipeline file is version {version}, newer than this build reads \
                     ({PIPELINE_VERSION})"
                )));
            }
            Some(version) => {
                return Err(DataError::Pipeline(format!(
                    "the pipeline file's version {version} is not one this build reads \
                     ({PIPELINE_VERSION})"
                )));
            }
        }
        if file.step.is_empty() {
            return Err(DataError::Pipeline("the pipeline has no [[step]]".into()));
        }
        for (index, step) in file.step.iter().enumerate() {
            check_settings(index, step)?;
        }
        Ok(Pipeline { steps: file.step, sha256: sha256_hex(toml.as_bytes()) })
    }
}

/// Checks what can be checked without a schema.
fn check_settings(index: usize, step: &StepSpec) -> Result<(), DataError> {
    let refuse = |reason: &str| Err(step_error(index, step.op(), reason));
    let columns: &[String] = match step {
        StepSpec::Select { columns }
        | StepSpec::Impute { columns, .. }
        | StepSpec::Standardize { columns }
        | StepSpec::Normalize { columns }
        | StepSpec::OneHot { columns, .. }
        | StepSpec::Ordinal { columns, .. }
        | StepSpec::TextClean { columns, .. }
        | StepSpec::Redact { columns, .. }
        | StepSpec::Pseudonymize { columns, .. } => columns,
        StepSpec::Rename { columns } if columns.is_empty() => return refuse("no columns"),
        StepSpec::Cast { columns, .. } if columns.is_empty() => return refuse("no columns"),
        StepSpec::Filter { when } if when.is_empty() => return refuse("`when` is empty"),
        StepSpec::Rename { .. }
        | StepSpec::Cast { .. }
        | StepSpec::Filter { .. }
        | StepSpec::Dedupe { .. }
        | StepSpec::Split { .. } => &[],
    };
    let needs_columns = !matches!(
        step,
        StepSpec::Rename { .. }
            | StepSpec::Cast { .. }
            | StepSpec::Filter { .. }
            | StepSpec::Dedupe { .. }
            | StepSpec::Split { .. }
    );
    if needs_columns && columns.is_empty() {
        return refuse("no columns");
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some(twice) = columns.iter().find(|c| !seen.insert(c.as_str())) {
        return Err(step_error(index, step.op(), format!("column {twice:?} is listed twice")));
    }
    match step {
        StepSpec::Impute { strategy: Strategy::Constant, value: None, .. } => {
            refuse("strategy \"constant\" needs a `value`")
        }
        StepSpec::Impute { strategy, value: Some(_), .. } if *strategy != Strategy::Constant => {
            refuse("`value` is only for strategy \"constant\"")
        }
        StepSpec::OneHot { max_categories: 0, .. }
        | StepSpec::Ordinal { max_categories: 0, .. } => {
            refuse("max_categories must be at least 1")
        }
        StepSpec::Redact { pii, regex, values, .. }
            if pii.is_empty() && regex.is_empty() && values.is_empty() =>
        {
            refuse("nothing to redact: give `pii`, `regex` or `values`")
        }
        StepSpec::Pseudonymize { length, .. } if !(8..=64).contains(length) => {
            refuse("length must be 8 to 64 hex digits")
        }
        StepSpec::Split { train, validation, test, column, .. } => {
            let shares = [*train, *validation, *test];
            if shares.iter().any(|s| !s.is_finite() || *s < 0.0 || *s > 1.0) {
                return refuse("train, validation and test must be between 0 and 1");
            }
            if (shares.iter().sum::<f64>() - 1.0).abs() > 1e-9 {
                return refuse("train + validation + test must be 1");
            }
            if column.is_empty() {
                return refuse("the column name is empty");
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipeline_parses_with_defaults_filled_and_stable_digests() {
        let text = "version = 1\n[[step]]\nop = \"one_hot\"\ncolumns = [\"city\"]\n\
                    [[step]]\nop = \"split\"\nseed = 7\ntrain = 0.8\ntest = 0.2\n";
        let pipeline = Pipeline::parse(text).unwrap();
        assert_eq!(pipeline.steps.len(), 2);
        assert_eq!(
            pipeline.steps[0],
            StepSpec::OneHot {
                columns: vec!["city".into()],
                max_categories: 100,
                unknown: Unknown::Error
            }
        );
        // The same step written with its defaults has the same digest; another does not.
        let explicit = "version = 1\n[[step]]\nop = \"one_hot\"\ncolumns = [\"city\"]\n\
                        max_categories = 100\nunknown = \"error\"\n";
        let other = "version = 1\n[[step]]\nop = \"one_hot\"\ncolumns = [\"city\"]\n\
                     max_categories = 99\n";
        let digest = |t: &str| Pipeline::parse(t).unwrap().steps[0].sha256();
        assert_eq!(digest(text), digest(explicit));
        assert_ne!(digest(text), digest(other));
        assert_ne!(Pipeline::parse(explicit).unwrap().sha256, pipeline.sha256);
    }

    #[test]
    fn bad_pipelines_are_refused_by_name() {
        let cases = [
            ("[[step]]\nop = \"select\"\ncolumns = [\"a\"]\n", "no `version`"),
            ("version = 2\n[[step]]\nop = \"select\"\ncolumns = [\"a\"]\n", "version 2, newer"),
            ("version = 0\n[[step]]\nop = \"select\"\ncolumns = [\"a\"]\n", "version 0"),
            ("version = 1\n", "no [[step]]"),
            ("version = 1\n[[step]]\nop = \"explode\"\n", "unknown variant `explode`"),
            ("version = 1\n[[step]]\nop = \"select\"\ncolumns = [\"a\"]\nfast = true\n", "fast"),
            ("version = 1\nname = \"x\"\n[[step]]\nop = \"select\"\ncolumns = [\"a\"]\n", "name"),
            ("version = 1\n[[step]]\nop = \"select\"\ncolumns = []\n", "step 1 (select): no col"),
            ("version = 1\n[[step]]\nop = \"select\"\ncolumns = [\"a\", \"a\"]\n", "twice"),
            (
                "version = 1\n[[step]]\nop = \"impute\"\nstrategy = \"constant\"\ncolumns = [\"a\"]\n",
                "needs a `value`",
            ),
            (
                "version = 1\n[[step]]\nop = \"impute\"\nstrategy = \"mean\"\ncolumns = [\"a\"]\nvalue = 1\n",
                "only for strategy",
            ),
            (
                "version = 1\n[[step]]\nop = \"impute\"\nstrategy = \"mode\"\ncolumns = [\"a\"]\n",
                "unknown variant `mode`",
            ),
            ("version = 1\n[[step]]\nop = \"redact\"\ncolumns = [\"a\"]\n", "nothing to redact"),
            (
                "version = 1\n[[step]]\nop = \"redact\"\ncolumns = [\"a\"]\npii = [\"name\"]\n",
                "unknown variant `name`",
            ),
            (
                "version = 1\n[[step]]\nop = \"pseudonymize\"\ncolumns = [\"a\"]\nlength = 4\n",
                "8 to 64",
            ),
            (
                "version = 1\n[[step]]\nop = \"split\"\nseed = 1\ntrain = 0.8\ntest = 0.1\n",
                "must be 1",
            ),
            ("version = 1\n[[step]]\nop = \"split\"\nseed = 1\ntrain = 1.5\n", "between 0 and 1"),
            (
                "version = 1\n[[step]]\nop = \"one_hot\"\ncolumns = [\"a\"]\nmax_categories = 0\n",
                "at least 1",
            ),
            ("version = 1\n[[step]]\nop = \"cast\"\ncolumns = { a = \"date\" }\n", "date"),
            ("version = 1\n[[step]]\nop = \"filter\"\nwhen = []\n", "`when` is empty"),
        ];
        for (text, expected) in cases {
            let error = Pipeline::parse(text).unwrap_err().to_string();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }
}
