//! Rule-based labelling: labelling functions (conditions on a data set's columns, regular
//! expressions on its text) vote for a label per row; the majority labels the row, a tie leaves
//! it unlabelled. Coverage, overlap and conflict statistics say how far the rules can be trusted.
//!
//! Rules are TOML:
//!
//! ```toml
//! [[rule]]
//! name = "large"                       # unique
//! label = "malignant"
//! when = ["mean radius >= 17", "mean texture > 20"]   # all must hold
//!
//! [[rule]]
//! name = "mentions-pain"
//! label = "urgent"
//! when = ["text ~ '(?i)chest pain'"]
//! ```
//!
//! A condition is `COLUMN OP VALUE` with the operator between spaces: `==`, `!=`, `<`, `<=`, `>`,
//! `>=` against a number (int and float columns), `==`/`!=` against a quoted string (string
//! columns) or `true`/`false` (bool columns), `~` against a quoted regular expression (string
//! columns), or `COLUMN is missing` / `COLUMN is not missing`. A missing value satisfies only
//! `is missing`. Every column is checked against the data set's schema before a row is read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use arrow_array::cast::AsArray as _;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::error::DataError;
use crate::ingest::Dataset;
use crate::schema::{ColumnType, Field, Value};
use crate::shard::ShardWriter;
use crate::source::{self, DirStore};

/// The rules file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    rule: Vec<RuleText>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleText {
    name: String,
    label: String,
    when: Vec<String>,
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    fn holds(self, ordering: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::{Equal, Greater, Less};
        match self {
            Cmp::Eq => ordering == Equal,
            Cmp::Ne => ordering != Equal,
            Cmp::Lt => ordering == Less,
            Cmp::Le => ordering != Greater,
            Cmp::Gt => ordering == Greater,
            Cmp::Ge => ordering != Less,
        }
    }
}

/// What a condition tests, bound to its column's type.
#[derive(Debug)]
enum Test {
    Number(Cmp, f64),
    Text(Cmp, String),
    Bool(Cmp, bool),
    Matches(Regex),
    Missing,
    Present,
}

/// One condition on one column (also a preprocessing `filter`'s).
#[derive(Debug)]
pub(crate) struct Condition {
    column: usize,
    test: Test,
}

impl Condition {
    /// Whether `row` (values in schema order) satisfies the condition.
    pub(crate) fn holds(&self, row: &[Value]) -> bool {
        let Some(value) = row.get(self.column) else { return false };
        match (&self.test, value) {
            (Test::Missing, value) => matches!(value, Value::Null),
            (Test::Present, value) => !matches!(value, Value::Null),
            (_, Value::Null) => false,
            (Test::Number(cmp, literal), Value::Int(v)) => {
                (*v as f64).partial_cmp(literal).is_some_and(|o| cmp.holds(o))
            }
            (Test::Number(cmp, literal), Value::Float(v)) => {
                v.partial_cmp(literal).is_some_and(|o| cmp.holds(o))
            }
            (Test::Text(cmp, literal), Value::Str(v)) => cmp.holds(v.as_str().cmp(literal)),
            (Test::Bool(cmp, literal), Value::Bool(v)) => cmp.holds(v.cmp(literal)),
            (Test::Matches(regex), Value::Str(v)) => regex.is_match(v),
            _ => false,
        }
    }
}

/// One labelling function.
#[derive(Debug)]
pub struct Rule {
    name: String,
    label: String,
    conditions: Vec<Condition>,
}

impl Rule {
    /// The rule's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The label it votes for.
    pub fn label(&self) -> &str {
        &self.label
    }

    fn fires(&self, row: &[Value]) -> bool {
        self.conditions.iter().all(|c| c.holds(row))
    }
}

/// Labelling functions checked against a schema.
#[derive(Debug)]
pub struct Rules {
    rules: Vec<Rule>,
}

fn refused(rule: &str, reason: impl std::fmt::Display) -> DataError {
    DataError::Rules(format!("rule {rule:?}: {reason}"))
}

/// The operators, longest first so that `>=` is not read as `>`.
const OPERATORS: [(&str, Option<Cmp>); 7] = [
    (" >= ", Some(Cmp::Ge)),
    (" <= ", Some(Cmp::Le)),
    (" == ", Some(Cmp::Eq)),
    (" != ", Some(Cmp::Ne)),
    (" > ", Some(Cmp::Gt)),
    (" < ", Some(Cmp::Lt)),
    (" ~ ", None),
];

/// A quoted literal's contents (single or double quotes, no escapes).
fn unquote(text: &str) -> Option<&str> {
    let text = text.trim();
    ['\'', '"'].into_iter().find_map(|quote| {
        text.strip_prefix(quote)?.strip_suffix(quote).filter(|inner| !inner.contains(quote))
    })
}

fn column_index(fields: &[Field], name: &str) -> Result<(usize, ColumnType), String> {
    fields
        .iter()
        .enumerate()
        .find(|(_, f)| f.name == name)
        .map(|(index, f)| (index, f.ty))
        .ok_or_else(|| format!("no column {name:?} in the data set"))
}

fn parse_condition(fields: &[Field], rule: &str, text: &str) -> Result<Condition, DataError> {
    Condition::parse(fields, text).map_err(|reason| refused(rule, reason))
}

impl Condition {
    /// Parses one condition and checks it against `fields`; the error is the reason, for the
    /// caller to prefix with the rule or step it belongs to.
    pub(crate) fn parse(fields: &[Field], text: &str) -> Result<Condition, String> {
        let trimmed = text.trim();
        for (suffix, test) in [(" is not missing", Test::Present), (" is missing", Test::Missing)] {
            if let Some(column) = trimmed.strip_suffix(suffix) {
                let (column, _) = column_index(fields, column.trim())?;
                return Ok(Condition { column, test });
            }
        }
        let Some((cmp, (name, literal))) = OPERATORS
            .iter()
            .find_map(|(op, cmp)| trimmed.split_once(op).map(|parts| (*cmp, parts)))
        else {
            return Err(format!(
                "condition {text:?} is not COLUMN OP VALUE (OP one of == != < <= > >= ~, between \
                 spaces) or COLUMN is [not] missing"
            ));
        };
        let (name, literal) = (name.trim(), literal.trim());
        let (column, ty) = column_index(fields, name)?;
        let wrong = |expected: &str| {
            format!("in {text:?}, column {name:?} is {ty}: compare it with {expected}")
        };
        let test = match (cmp, ty) {
            (None, ColumnType::String) => {
                let pattern =
                    unquote(literal).ok_or_else(|| wrong("a quoted regular expression"))?;
                let regex = regex::RegexBuilder::new(pattern)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| format!("in {text:?}: {e}"))?;
                Test::Matches(regex)
            }
            (None, _) => return Err(wrong("==, !=, <, <=, > or >= (`~` is for strings)")),
            (Some(cmp), ColumnType::Int | ColumnType::Float) => {
                let number = literal.parse::<f64>().ok().filter(|n| n.is_finite());
                Test::Number(cmp, number.ok_or_else(|| wrong("a number"))?)
            }
            (Some(cmp @ (Cmp::Eq | Cmp::Ne)), ColumnType::String) => Test::Text(
                cmp,
                unquote(literal).ok_or_else(|| wrong("a quoted string"))?.to_owned(),
            ),
            (Some(cmp @ (Cmp::Eq | Cmp::Ne)), ColumnType::Bool) => match literal {
                "true" => Test::Bool(cmp, true),
                "false" => Test::Bool(cmp, false),
                _ => return Err(wrong("true or false")),
            },
            (Some(_), _) => return Err(wrong("== or != (or ~ for a regular expression)")),
        };
        Ok(Condition { column, test })
    }
}

impl Rules {
    /// Parses `toml` and checks every condition against `fields`.
    pub fn parse(toml: &str, fields: &[Field]) -> Result<Rules, DataError> {
        let file: RulesFile =
            ::toml::from_str(toml).map_err(|e| DataError::Rules(format!("the rules file: {e}")))?;
        if file.rule.is_empty() {
            return Err(DataError::Rules("the rules file has no [[rule]]".into()));
        }
        let mut names = BTreeSet::new();
        let mut rules = Vec::with_capacity(file.rule.len());
        for text in file.rule {
            if !names.insert(text.name.clone()) {
                return Err(refused(&text.name, "the name is used twice"));
            }
            if text.label.trim().is_empty() {
                return Err(refused(&text.name, "the label is empty"));
            }
            if text.when.is_empty() {
                return Err(refused(&text.name, "`when` lists no condition"));
            }
            let conditions = text
                .when
                .iter()
                .map(|condition| parse_condition(fields, &text.name, condition))
                .collect::<Result<_, _>>()?;
            rules.push(Rule { name: text.name, label: text.label, conditions });
        }
        Ok(Rules { rules })
    }

    /// The rules, in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Which rules fire on `row`, by index.
    fn firing(&self, row: &[Value]) -> Vec<usize> {
        self.rules.iter().enumerate().filter(|(_, r)| r.fires(row)).map(|(i, _)| i).collect()
    }
}

/// What one rule did over the data set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleStats {
    /// The rule.
    pub name: String,
    /// Its label.
    pub label: String,
    /// Rows it fired on.
    pub fired: u64,
    /// Of those, rows another rule also fired on.
    pub overlaps: u64,
    /// Of those, rows a rule of another label also fired on.
    pub conflicts: u64,
}

/// What labelling did over the data set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelStats {
    /// Rows read.
    pub rows: u64,
    /// Rows at least one rule fired on.
    pub covered: u64,
    /// Rows where rules of different labels fired.
    pub conflicted: u64,
    /// Rows given a label (the majority of the votes).
    pub labelled: u64,
    /// Covered rows left unlabelled because two labels tied.
    pub tied: u64,
    /// Rows per label given.
    pub labels: BTreeMap<String, u64>,
    /// Per rule, in file order.
    pub rules: Vec<RuleStats>,
}

/// Votes on rows one at a time and keeps the statistics.
#[derive(Debug)]
pub struct Labeller<'r> {
    rules: &'r Rules,
    stats: LabelStats,
}

impl<'r> Labeller<'r> {
    /// A labeller over `rules`, with empty statistics.
    pub fn new(rules: &'r Rules) -> Self {
        let stats = LabelStats {
            rules: rules
                .rules
                .iter()
                .map(|r| RuleStats {
                    name: r.name.clone(),
                    label: r.label.clone(),
                    fired: 0,
                    overlaps: 0,
                    conflicts: 0,
                })
                .collect(),
            ..LabelStats::default()
        };
        Labeller { rules, stats }
    }

    /// The label of `row` (the majority of the rules that fire; `None` when none fires or two
    /// labels tie), counted in the statistics.
    pub fn label(&mut self, row: &[Value]) -> Option<&'r str> {
        self.stats.rows += 1;
        let firing = self.rules.firing(row);
        if firing.is_empty() {
            return None;
        }
        self.stats.covered += 1;
        let mut votes: BTreeMap<&'r str, u64> = BTreeMap::new();
        let rules: &'r Rules = self.rules;
        for rule in firing.iter().filter_map(|&index| rules.rules.get(index)) {
            *votes.entry(rule.label.as_str()).or_default() += 1;
        }
        let conflicted = votes.len() > 1;
        self.stats.conflicted += u64::from(conflicted);
        for &index in &firing {
            if let Some(stats) = self.stats.rules.get_mut(index) {
                stats.fired += 1;
                stats.overlaps += u64::from(firing.len() > 1);
                stats.conflicts += u64::from(conflicted);
            }
        }
        let most = votes.values().copied().max().unwrap_or(0);
        let mut winners = votes.iter().filter(|(_, n)| **n == most).map(|(label, _)| *label);
        let winner = winners.next();
        if winners.next().is_some() {
            self.stats.tied += 1;
            return None;
        }
        let label = winner?;
        self.stats.labelled += 1;
        *self.stats.labels.entry(label.to_owned()).or_default() += 1;
        Some(label)
    }

    /// The statistics so far.
    pub fn finish(self) -> LabelStats {
        self.stats
    }
}

/// The value of `array` at `row`, as its column's type stores it.
pub(crate) fn value_at(array: &dyn Array, ty: ColumnType, row: usize) -> Value {
    if array.is_null(row) {
        return Value::Null;
    }
    match ty {
        ColumnType::Int => {
            array.as_primitive_opt::<Int64Type>().map_or(Value::Null, |a| Value::Int(a.value(row)))
        }
        ColumnType::Float => array
            .as_primitive_opt::<Float64Type>()
            .map_or(Value::Null, |a| Value::Float(a.value(row))),
        ColumnType::String => {
            array.as_string_opt::<i32>().map_or(Value::Null, |a| Value::Str(a.value(row).into()))
        }
        ColumnType::Bool => {
            array.as_boolean_opt().map_or(Value::Null, |a| Value::Bool(a.value(row)))
        }
    }
}

/// The rows of `batch` as values of `fields`' types.
pub(crate) fn rows(batch: &RecordBatch, fields: &[Field]) -> impl Iterator<Item = Vec<Value>> {
    (0..batch.num_rows()).map(move |row| {
        batch.columns().iter().zip(fields).map(|(array, f)| value_at(array, f.ty, row)).collect()
    })
}

/// `labelling.json` beside a labelled data set: the rules' digest and what they did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Labelling {
    /// SHA-256 of the rules file, hex.
    pub rules_sha256: String,
    /// The label column added.
    pub column: String,
    /// What the rules did.
    pub stats: LabelStats,
}

/// The file [`label_dataset`] writes beside `dataset.json`.
pub const LABELLING_FILE: &str = "labelling.json";

/// Labels the data set in `dir` with the rules in `rules_toml` (checked against its schema
/// first) into a new data set in `out`: the same columns and rows plus `column` (a string; null
/// where no rule fired or labels tied), with [`LABELLING_FILE`] beside it. Every shard's digest
/// is checked as it is read.
pub fn label_dataset(
    dir: &Path,
    rules_toml: &str,
    column: &str,
    out: &Path,
) -> Result<(Dataset, Labelling), DataError> {
    let (source, described) = source::read_dataset_with_digest(dir)?;
    if source.schema.iter().any(|f| f.name == column) {
        return Err(DataError::Rules(format!(
            "the data set already has a column {column:?}; name the label column with --column"
        )));
    }
    let rules = Rules::parse(rules_toml, &source.schema)?;
    let mut fields = source.schema.clone();
    fields.push(Field { name: column.to_owned(), ty: ColumnType::String });
    let shard_rows = source.shards.iter().map(|s| s.rows).max().unwrap_or(1).max(1);
    let mut sink = ShardWriter::new(DirStore::create(out)?, &fields, shard_rows);
    let mut labeller = Labeller::new(&rules);
    crate::profile::read_shards(dir, &source, |batch| {
        for mut row in rows(batch, &source.schema) {
            let label = labeller.label(&row);
            row.push(label.map_or(Value::Null, |l| Value::Str(l.to_owned())));
            sink.push(&row)?;
        }
        Ok(())
    })?;
    let stats = labeller.finish();
    if stats.rows != source.rows {
        return Err(DataError::Dataset(format!(
            "the shards hold {} rows, dataset.json says {}",
            stats.rows, source.rows
        )));
    }
    let (shards, columns, _) = sink.finish()?;
    let labelled =
        Dataset::derived(&source, dir, described, fields, stats.rows, shards, columns, None);
    let labelling = Labelling {
        rules_sha256: source::sha256_hex(rules_toml.as_bytes()),
        column: column.to_owned(),
        stats,
    };
    source::write_json(out, LABELLING_FILE, &labelling)?;
    source::write_dataset(out, &labelled)?;
    Ok((labelled, labelling))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> Vec<Field> {
        vec![
            Field { name: "mean radius".into(), ty: ColumnType::Float },
            Field { name: "age".into(), ty: ColumnType::Int },
            Field { name: "notes".into(), ty: ColumnType::String },
            Field { name: "smoker".into(), ty: ColumnType::Bool },
        ]
    }

    fn row(radius: Option<f64>, age: i64, notes: &str, smoker: bool) -> Vec<Value> {
        vec![
            radius.map_or(Value::Null, Value::Float),
            Value::Int(age),
            Value::Str(notes.into()),
            Value::Bool(smoker),
        ]
    }

    const RULES: &str = r#"
        [[rule]]
        name = "large"
        label = "malignant"
        when = ["mean radius >= 17"]

        [[rule]]
        name = "old-smoker"
        label = "malignant"
        when = ["age > 60", "smoker == true"]

        [[rule]]
        name = "benign-note"
        label = "benign"
        when = ["notes ~ '(?i)\\bbenign\\b'"]

        [[rule]]
        name = "unmeasured"
        label = "benign"
        when = ["mean radius is missing", "notes != 'urgent'"]
    "#;

    #[test]
    fn rules_vote_and_the_statistics_count_coverage_overlap_and_conflict() {
        let rules = Rules::parse(RULES, &fields()).unwrap();
        let mut labeller = Labeller::new(&rules);
        // large + old-smoker: two votes, one label.
        assert_eq!(labeller.label(&row(Some(18.0), 70, "", true)), Some("malignant"));
        // large vs benign-note: a tie, no label.
        assert_eq!(labeller.label(&row(Some(17.0), 30, "looks Benign", false)), None);
        // Nothing fires (16.9 < 17; the word is not whole).
        assert_eq!(labeller.label(&row(Some(16.9), 30, "benignity", false)), None);
        // A missing radius: only `is missing` holds; `>=` does not.
        assert_eq!(labeller.label(&row(None, 30, "", false)), Some("benign"));
        assert_eq!(labeller.label(&row(None, 30, "urgent", false)), None);
        // Two malignant votes beat one benign.
        assert_eq!(labeller.label(&row(Some(20.0), 61, "benign", true)), Some("malignant"));
        let stats = labeller.finish();
        assert_eq!((stats.rows, stats.covered, stats.labelled, stats.tied), (6, 4, 3, 1));
        assert_eq!(stats.conflicted, 2);
        assert_eq!(stats.labels["malignant"], 2);
        assert_eq!(stats.labels["benign"], 1);
        let large = &stats.rules[0];
        assert_eq!((large.fired, large.overlaps, large.conflicts), (3, 3, 2));
        let unmeasured = &stats.rules[3];
        assert_eq!((unmeasured.fired, unmeasured.overlaps, unmeasured.conflicts), (1, 0, 0));
    }

    #[test]
    fn bad_rules_are_refused_naming_the_rule_and_the_reason() {
        let cases = [
            ("", "no [[rule]]"),
            ("[[rule]]\nname='a'\nlabel='x'\nwhen=['radius > 1']", "no column \"radius\""),
            ("[[rule]]\nname='a'\nlabel='x'\nwhen=['age > old']", "compare it with a number"),
            ("[[rule]]\nname='a'\nlabel='x'\nwhen=['notes > \"a\"']", "== or !="),
            ("[[rule]]\nname='a'\nlabel='x'\nwhen=['age ~ \"1\"']", "`~` is for strings"),
            ("[[rule]]\nname='a'\nlabel='x'\nwhen=['notes ~ \"(\"']", "regex parse error"),
            ("[[rule]]\nname='a'\nlabel='x'\nwhen=['notes == urgent']", "a quoted string"),
            ("[[rule]]\nname='a'\nlabel='x'\nwhen=['smoker == yes']", "true or false"),
            ("[[rule]]\nname='a'\nlabel='x'\nwhen=['age>1']", "is not COLUMN OP VALUE"),
            ("[[rule]]\nname='a'\nlabel='x'\nwhen=[]", "no condition"),
            ("[[rule]]\nname='a'\nlabel=' '\nwhen=['age > 1']", "label is empty"),
            (
                "[[rule]]\nname='a'\nlabel='x'\nwhen=['age > 1']\n[[rule]]\nname='a'\nlabel='y'\nwhen=['age > 2']",
                "used twice",
            ),
            ("[[rule]]\nname='a'\nlabel='x'\nwhen=['age > 1']\nweight=2", "unknown field"),
            ("[[rule]]\nname='a'\nlabel='x'\nwhen=['age > NaN']", "a number"),
        ];
        for (toml, expected) in cases {
            let error = Rules::parse(toml, &fields()).unwrap_err().to_string();
            assert!(error.contains(expected), "{toml:?}: {error}");
        }
    }

    #[test]
    fn a_regular_expression_too_large_to_compile_is_refused() {
        let toml = "[[rule]]\nname='a'\nlabel='x'\nwhen=['notes ~ \"(a{1000}){1000}\"']";
        assert!(Rules::parse(toml, &fields()).is_err());
    }
}
