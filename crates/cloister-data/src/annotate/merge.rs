//! Merging several annotators' tables: units, agreement, adjudication.
//!
//! The units annotators are compared on:
//!
//! - **class**: an item. An annotator who gave it a class rated it; one who did not is not
//!   counted for it. Two classes from one annotator on one item are refused (multi-label choices
//!   are not one category).
//! - **span**: a position of a text item (a character, or a CoNLL token). When any row of the
//!   merge is a span, every text item is a span item and each of its positions is a unit; every
//!   annotator of the item rates each position `B-LABEL` (a span starts), `I-LABEL` (inside) or
//!   `O` (no span). Overlapping spans from one annotator are refused.
//! - **box**: a group of boxes on one image, at most one per annotator, formed greedily: each
//!   box not yet grouped (annotators in name order, boxes in input order) takes from every other
//!   annotator the ungrouped box of highest intersection over union with it, if that is at least
//!   [`IOU_THRESHOLD`]. Every annotator of the image rates the group with their box's label, or
//!   with `(no box)`.
//!
//! Kappa is computed over the units every annotator of the merge rated (Cohen's for two
//! annotators, Fleiss' for more); units only some rated are counted as `partial` and adjudicated
//! among those who did. Per label, the same kappa on the ratings recoded to "this label" or "not".
//!
//! Adjudication decides each unit from the votes of the annotators who rated it; where the rule
//! does not decide, the unit stays unlabelled and goes to the conflicts with every vote.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::agreement::{Statistic, kappa};
use super::{Annotation, AnnotationKind, Table, Unit};
use crate::error::DataError;

/// Boxes whose intersection over union reaches this are the same object.
pub const IOU_THRESHOLD: f64 = 0.5;

/// The longest text item compared position by position.
pub const MAX_POSITIONS: usize = 1 << 20;

/// The annotator name adjudicated rows carry.
pub const ADJUDICATED: &str = "adjudicated";

/// How a unit's votes become its label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Adjudication {
    /// The category more than half of the unit's annotators chose.
    Majority,
    /// The category most of the unit's annotators chose, if no other has as many.
    Plurality,
    /// The category every annotator of the unit chose.
    Unanimous,
    /// This annotator's category (units they did not rate stay unlabelled).
    Annotator(String),
}

impl FromStr for Adjudication {
    type Err = DataError;

    fn from_str(text: &str) -> Result<Self, DataError> {
        match text {
            "majority" => Ok(Self::Majority),
            "plurality" => Ok(Self::Plurality),
            "unanimous" => Ok(Self::Unanimous),
            other => match other.strip_prefix("annotator:") {
                Some(name) if !name.trim().is_empty() => Ok(Self::Annotator(name.to_owned())),
                _ => Err(DataError::Merge(format!(
                    "unknown adjudication rule {other:?}: use majority, plurality, unanimous or \
                     annotator:NAME"
                ))),
            },
        }
    }
}

impl fmt::Display for Adjudication {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Majority => f.write_str("majority"),
            Self::Plurality => f.write_str("plurality"),
            Self::Unanimous => f.write_str("unanimous"),
            Self::Annotator(name) => write!(f, "annotator:{name}"),
        }
    }
}

/// What one annotator said about one unit.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Category {
    /// A class or a box's label.
    Label(String),
    /// The first position of a span.
    Begin(String),
    /// A later position of a span.
    Inside(String),
    /// No span here.
    Outside,
    /// No box here.
    NoBox,
}

impl Category {
    fn label(&self) -> Option<&str> {
        match self {
            Self::Label(l) | Self::Begin(l) | Self::Inside(l) => Some(l),
            Self::Outside | Self::NoBox => None,
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Label(l) => f.write_str(l),
            Self::Begin(l) => write!(f, "B-{l}"),
            Self::Inside(l) => write!(f, "I-{l}"),
            Self::Outside => f.write_str("O"),
            Self::NoBox => f.write_str("(no box)"),
        }
    }
}

type Votes = BTreeMap<String, Category>;

impl Adjudication {
    /// The decided category, or why there is none.
    fn decide(&self, votes: &Votes) -> Result<Category, String> {
        let mut counts: BTreeMap<&Category, usize> = BTreeMap::new();
        for category in votes.values() {
            *counts.entry(category).or_default() += 1;
        }
        let most = counts.values().copied().max().unwrap_or(0);
        let top: Vec<&Category> =
            counts.iter().filter(|(_, n)| **n == most).map(|(c, _)| *c).collect();
        let tally =
            || counts.iter().map(|(c, n)| format!("{c} {n}")).collect::<Vec<_>>().join(", ");
        match self {
            Self::Annotator(name) => {
                votes.get(name).cloned().ok_or_else(|| format!("{name} did not annotate this item"))
            }
            Self::Unanimous if counts.len() != 1 => Err(format!("not unanimous: {}", tally())),
            _ if top.len() > 1 => Err(format!("tie: {}", tally())),
            Self::Majority if most * 2 <= votes.len() => {
                Err(format!("no majority of {} votes: {}", votes.len(), tally()))
            }
            _ => top.first().map(|c| (*c).clone()).ok_or_else(|| "no votes".to_owned()),
        }
    }
}

/// Agreement on one label.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelAgreement {
    /// Units (of those every annotator rated) at least one annotator gave this label.
    pub units: u64,
    /// Of those, units every annotator gave it.
    pub unanimous: u64,
    /// Kappa of "this label" against "any other"; `None` where undefined.
    pub kappa: Option<f64>,
}

/// Agreement and adjudication over one kind of unit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    /// What a unit is: `item`, `char`, `token` or `box group`.
    pub unit: String,
    /// Units every annotator rated: the ones kappa is computed on.
    pub units: u64,
    /// Units only some annotators rated (adjudicated, not in kappa).
    pub partial: u64,
    /// Cohen's or Fleiss'; `None` with fewer than two annotators or no complete unit.
    pub statistic: Option<Statistic>,
    /// Observed agreement.
    pub observed: Option<f64>,
    /// Chance agreement.
    pub expected: Option<f64>,
    /// Kappa; `None` where undefined.
    pub kappa: Option<f64>,
    /// Per label.
    pub labels: BTreeMap<String, LabelAgreement>,
    /// Units the rule decided.
    pub decided: u64,
    /// Units the rule left unlabelled (in the conflicts).
    pub conflicts: u64,
    /// Adjudicated annotations written.
    pub written: u64,
}

/// `agreement.json`: what a merge found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MergeSummary {
    /// The adjudication rule.
    pub rule: String,
    /// The tables merged.
    pub inputs: Vec<String>,
    /// Every annotator, by name.
    pub annotators: Vec<String>,
    /// Distinct items.
    pub items: u64,
    /// Item-level classes.
    pub classes: Option<Agreement>,
    /// Text spans.
    pub spans: Option<Agreement>,
    /// Image boxes.
    pub boxes: Option<Agreement>,
}

/// A unit the rule left unlabelled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conflict {
    /// The item.
    pub item: String,
    /// Class, span or box.
    pub kind: AnnotationKind,
    /// The span positions (a run of positions with the same votes), for spans.
    pub start: Option<u64>,
    /// Their end (exclusive).
    pub end: Option<u64>,
    /// The first annotator's box in the group, for boxes: `[x, y, width, height]`.
    #[serde(rename = "box")]
    pub rect: Option<[f64; 4]>,
    /// Every vote, by annotator.
    pub votes: BTreeMap<String, String>,
    /// Why the rule did not decide.
    pub reason: String,
}

/// What [`merge`] produced.
#[derive(Clone, Debug, PartialEq)]
pub struct Merged {
    /// The adjudicated annotations.
    pub labels: Vec<Annotation>,
    /// Units left unlabelled.
    pub conflicts: Vec<Conflict>,
    /// The statistics.
    pub summary: MergeSummary,
}

/// One item's rows, checked for consistency.
#[derive(Default)]
struct ItemRows<'t> {
    sha256: Option<(&'t str, String)>,
    length: Option<(u64, Unit, String)>,
    box_unit: Option<(Unit, String)>,
    annotators: BTreeSet<&'t str>,
    classes: BTreeMap<&'t str, (&'t str, String)>,
    spans: BTreeMap<&'t str, Vec<(u64, u64, &'t str, String)>>,
    boxes: BTreeMap<&'t str, Vec<([f64; 4], &'t str)>>,
}

fn at(table: &Table, line: u64) -> String {
    format!("{}, line {line}", table.name)
}

fn missing(table: &Table, line: u64, kind: AnnotationKind, field: &str) -> DataError {
    DataError::Annotation {
        file: table.name.clone(),
        at: format!("line {line}"),
        reason: format!("a {kind} row without {field}"),
    }
}

fn gather<'t>(tables: &'t [Table]) -> Result<BTreeMap<&'t str, ItemRows<'t>>, DataError> {
    let mut items: BTreeMap<&str, ItemRows<'_>> = BTreeMap::new();
    for table in tables {
        for (line, row) in &table.rows {
            let line = *line;
            let here = at(table, line);
            let item = items.entry(row.item.as_str()).or_default();
            match &item.sha256 {
                None => item.sha256 = Some((row.item_sha256.as_str(), here.clone())),
                Some((sha, first)) if *sha != row.item_sha256 => {
                    return Err(DataError::Merge(format!(
                        "item {:?}: {here} annotates content with SHA-256 {} but {first} \
                         annotates {sha}: the annotators did not see the same item",
                        row.item,
                        row.item_sha256.get(..12).unwrap_or(&row.item_sha256),
                    )));
                }
                Some(_) => {}
            }
            if let (Some(length), Some(unit @ (Unit::Char | Unit::Token))) = (row.length, row.unit)
            {
                match &item.length {
                    None => item.length = Some((length, unit, here.clone())),
                    Some((l, u, first)) if (*l, *u) != (length, unit) => {
                        return Err(DataError::Merge(format!(
                            "item {:?}: {here} gives it {length} {unit}s but {first} {l} {u}s",
                            row.item
                        )));
                    }
                    Some(_) => {}
                }
            }
            item.annotators.insert(row.annotator.as_str());
            let label =
                || row.label.as_deref().ok_or_else(|| missing(table, line, row.kind, "a label"));
            match row.kind {
                AnnotationKind::None => {}
                AnnotationKind::Class => {
                    let label = label()?;
                    if let Some((other, first)) =
                        item.classes.insert(row.annotator.as_str(), (label, here.clone()))
                    {
                        return Err(DataError::Merge(format!(
                            "item {:?}: annotator {:?} gave it class {other:?} ({first}) and \
                             {label:?} ({here}): one class per annotator and item (multi-label \
                             choices are not compared as one category)",
                            row.item, row.annotator
                        )));
                    }
                }
                AnnotationKind::Span => {
                    let label = label()?;
                    let (Some(start), Some(end)) = (row.start, row.end) else {
                        return Err(missing(table, line, row.kind, "start and end"));
                    };
                    if row.unit.is_none() || row.length.is_none() {
                        return Err(missing(table, line, row.kind, "a unit and length"));
                    }
                    item.spans
                        .entry(row.annotator.as_str())
                        .or_default()
                        .push((start, end, label, here));
                }
                AnnotationKind::Box => {
                    let label = label()?;
                    let (Some(x), Some(y), Some(w), Some(h), Some(unit)) =
                        (row.x, row.y, row.width, row.height, row.unit)
                    else {
                        return Err(missing(table, line, row.kind, "x, y, width, height and unit"));
                    };
                    match &item.box_unit {
                        None => item.box_unit = Some((unit, here.clone())),
                        Some((u, first)) if *u != unit => {
                            return Err(DataError::Merge(format!(
                                "item {:?}: {here} gives a box in unit {unit} but {first} in unit {u}",
                                row.item
                            )));
                        }
                        Some(_) => {}
                    }
                    item.boxes
                        .entry(row.annotator.as_str())
                        .or_default()
                        .push(([x, y, w, h], label));
                }
            }
        }
    }
    Ok(items)
}

/// Units of one kind, their votes, and what adjudication made of them.
struct Collected {
    unit: &'static str,
    votes: Vec<Votes>,
    decided: u64,
    conflicts: u64,
    written: u64,
}

impl Collected {
    fn new(unit: &'static str) -> Self {
        Collected { unit, votes: Vec::new(), decided: 0, conflicts: 0, written: 0 }
    }

    fn agreement(&self, annotators: &[String]) -> Agreement {
        let complete: Vec<Vec<&Category>> = self
            .votes
            .iter()
            .filter(|votes| votes.len() == annotators.len())
            .map(|votes| votes.values().collect())
            .collect();
        let overall = if annotators.len() >= 2 { kappa(&complete) } else { None };
        let mut labels: BTreeMap<String, LabelAgreement> = BTreeMap::new();
        let names: BTreeSet<&str> = complete.iter().flatten().filter_map(|c| c.label()).collect();
        for name in names {
            let binary: Vec<Vec<bool>> = complete
                .iter()
                .map(|row| row.iter().map(|c| c.label() == Some(name)).collect())
                .collect();
            let units = binary.iter().filter(|row| row.iter().any(|b| *b)).count() as u64;
            let unanimous = binary.iter().filter(|row| row.iter().all(|b| *b)).count() as u64;
            let k = if annotators.len() >= 2 { kappa(&binary).and_then(|k| k.kappa) } else { None };
            labels.insert(name.to_owned(), LabelAgreement { units, unanimous, kappa: k });
        }
        Agreement {
            unit: self.unit.to_owned(),
            units: complete.len() as u64,
            partial: (self.votes.len() - complete.len()) as u64,
            statistic: overall.map(|k| k.statistic),
            observed: overall.map(|k| k.observed),
            expected: overall.map(|k| k.expected),
            kappa: overall.and_then(|k| k.kappa),
            labels,
            decided: self.decided,
            conflicts: self.conflicts,
            written: self.written,
        }
    }
}

fn display_votes(votes: &Votes) -> BTreeMap<String, String> {
    votes.iter().map(|(a, c)| (a.clone(), c.to_string())).collect()
}

fn iou(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    let w = (a[0] + a[2]).min(b[0] + b[2]) - a[0].max(b[0]);
    let h = (a[1] + a[3]).min(b[1] + b[3]) - a[1].max(b[1]);
    if w <= 0.0 || h <= 0.0 {
        return 0.0;
    }
    let inter = w * h;
    inter / (a[2] * a[3] + b[2] * b[3] - inter)
}

/// Merges annotation `tables` (read by [`super::read_table`]) with agreement statistics,
/// adjudicating every unit by `rule`.
pub fn merge(tables: &[Table], rule: &Adjudication) -> Result<Merged, DataError> {
    let items = gather(tables)?;
    let annotators: Vec<String> = items
        .values()
        .flat_map(|item| item.annotators.iter().map(|a| (*a).to_owned()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if annotators.is_empty() {
        return Err(DataError::Merge("the tables hold no annotations".into()));
    }
    if let Adjudication::Annotator(name) = rule
        && !annotators.contains(name)
    {
        return Err(DataError::Merge(format!(
            "annotator {name:?} is not in the tables (annotators: {})",
            annotators.join(", ")
        )));
    }
    let any_span = items.values().any(|item| !item.spans.is_empty());
    let any_box = items.values().any(|item| !item.boxes.is_empty());
    let any_class = items.values().any(|item| !item.classes.is_empty());
    let mut classes = Collected::new("item");
    let mut spans = Collected::new("position");
    let mut boxes = Collected::new("box group");
    let mut labels = Vec::new();
    let mut conflicts = Vec::new();
    for (id, item) in &items {
        let template = Annotation {
            item: (*id).to_owned(),
            item_sha256: item.sha256.as_ref().map(|(s, _)| (*s).to_owned()).unwrap_or_default(),
            annotator: ADJUDICATED.to_owned(),
            kind: AnnotationKind::Class,
            label: None,
            unit: None,
            length: None,
            start: None,
            end: None,
            x: None,
            y: None,
            width: None,
            height: None,
            source: format!("merge ({rule})"),
            record: 0,
        };
        if !item.classes.is_empty() {
            let votes: Votes = item
                .classes
                .iter()
                .map(|(a, (l, _))| ((*a).to_owned(), Category::Label((*l).to_owned())))
                .collect();
            match rule.decide(&votes) {
                Ok(category) => {
                    classes.decided += 1;
                    if let Some(label) = category.label() {
                        classes.written += 1;
                        labels
                            .push(Annotation { label: Some(label.to_owned()), ..template.clone() });
                    }
                }
                Err(reason) => {
                    classes.conflicts += 1;
                    conflicts.push(Conflict {
                        item: (*id).to_owned(),
                        kind: AnnotationKind::Class,
                        start: None,
                        end: None,
                        rect: None,
                        votes: display_votes(&votes),
                        reason,
                    });
                }
            }
            classes.votes.push(votes);
        }
        if any_span {
            if let Some((length, unit, _)) = &item.length {
                merge_spans(
                    item,
                    *length,
                    *unit,
                    rule,
                    &template,
                    &mut spans,
                    &mut labels,
                    &mut conflicts,
                )?;
            } else if !item.spans.is_empty() {
                return Err(DataError::Merge(format!(
                    "item {id:?}: spans without the item's length"
                )));
            }
        }
        if !item.boxes.is_empty() {
            merge_boxes(item, rule, &template, &mut boxes, &mut labels, &mut conflicts);
        }
    }
    for (index, label) in labels.iter_mut().enumerate() {
        label.record = index as u64 + 1;
    }
    let summary = MergeSummary {
        rule: rule.to_string(),
        inputs: tables.iter().map(|t| t.name.clone()).collect(),
        items: items.len() as u64,
        classes: any_class.then(|| classes.agreement(&annotators)),
        spans: any_span.then(|| spans.agreement(&annotators)),
        boxes: any_box.then(|| boxes.agreement(&annotators)),
        annotators,
    };
    Ok(Merged { labels, conflicts, summary })
}

#[allow(clippy::too_many_arguments)]
fn merge_spans(
    item: &ItemRows<'_>,
    length: u64,
    unit: Unit,
    rule: &Adjudication,
    template: &Annotation,
    collected: &mut Collected,
    labels: &mut Vec<Annotation>,
    conflicts: &mut Vec<Conflict>,
) -> Result<(), DataError> {
    collected.unit = if unit == Unit::Token { "token" } else { "char" };
    let size =
        usize::try_from(length).ok().filter(|size| *size <= MAX_POSITIONS).ok_or_else(|| {
            DataError::Merge(format!(
                "item {:?}: {length} {unit}s is over the limit of {MAX_POSITIONS} positions \
                 compared one by one",
                template.item
            ))
        })?;
    let mut tags: BTreeMap<&str, Vec<Category>> = BTreeMap::new();
    for annotator in &item.annotators {
        let mut row = vec![Category::Outside; size];
        let mut owner: Vec<Option<&str>> = vec![None; size];
        for (start, end, label, here) in item.spans.get(annotator).map(Vec::as_slice).unwrap_or(&[])
        {
            if start >= end || *end > length {
                return Err(DataError::Merge(format!(
                    "{here}: span {start}..{end} is outside the item's {length} {unit}s"
                )));
            }
            for position in *start..*end {
                let p = position as usize;
                let (Some(slot), Some(tag)) = (owner.get_mut(p), row.get_mut(p)) else { break };
                if let Some(first) = slot {
                    return Err(DataError::Merge(format!(
                        "{here}: span {start}..{end} overlaps another span of annotator \
                         {annotator:?} ({first}): overlapping or nested spans are not compared \
                         position by position"
                    )));
                }
                *slot = Some(here.as_str());
                *tag = if position == *start {
                    Category::Begin((*label).to_owned())
                } else {
                    Category::Inside((*label).to_owned())
                };
            }
        }
        tags.insert(*annotator, row);
    }
    let mut decided: Vec<Option<Category>> = Vec::with_capacity(size);
    let mut pending: Option<(u64, u64, Votes, String)> = None;
    let flush = |pending: &mut Option<(u64, u64, Votes, String)>, conflicts: &mut Vec<Conflict>| {
        if let Some((start, end, votes, reason)) = pending.take() {
            conflicts.push(Conflict {
                item: template.item.clone(),
                kind: AnnotationKind::Span,
                start: Some(start),
                end: Some(end),
                rect: None,
                votes: display_votes(&votes),
                reason,
            });
        }
    };
    for position in 0..size {
        let votes: Votes = tags
            .iter()
            .filter_map(|(a, row)| row.get(position).map(|c| ((*a).to_owned(), c.clone())))
            .collect();
        match rule.decide(&votes) {
            Ok(category) => {
                flush(&mut pending, conflicts);
                collected.decided += 1;
                decided.push(Some(category));
            }
            Err(reason) => {
                collected.conflicts += 1;
                decided.push(None);
                let p = position as u64;
                match &mut pending {
                    Some((_, end, same, why)) if *end == p && *same == votes && *why == reason => {
                        *end = p + 1;
                    }
                    _ => {
                        flush(&mut pending, conflicts);
                        pending = Some((p, p + 1, votes.clone(), reason));
                    }
                }
            }
        }
        collected.votes.push(votes);
    }
    flush(&mut pending, conflicts);
    // Decode the decided tags: B- starts a span, I- continues one of its label (and, after
    // adjudication, starts one when it does not follow its label), O or a conflict ends it.
    let mut open: Option<(u64, String)> = None;
    let mut close = |open: &mut Option<(u64, String)>, end: u64, labels: &mut Vec<Annotation>| {
        if let Some((start, label)) = open.take() {
            collected.written += 1;
            labels.push(Annotation {
                kind: AnnotationKind::Span,
                label: Some(label),
                unit: Some(unit),
                length: Some(length),
                start: Some(start),
                end: Some(end),
                ..template.clone()
            });
        }
    };
    for (position, category) in decided.iter().enumerate() {
        let p = position as u64;
        match category {
            Some(Category::Inside(label)) if open.as_ref().is_some_and(|(_, l)| l == label) => {}
            Some(Category::Begin(label) | Category::Inside(label)) => {
                close(&mut open, p, labels);
                open = Some((p, label.clone()));
            }
            _ => close(&mut open, p, labels),
        }
    }
    close(&mut open, length, labels);
    Ok(())
}

fn merge_boxes(
    item: &ItemRows<'_>,
    rule: &Adjudication,
    template: &Annotation,
    collected: &mut Collected,
    labels: &mut Vec<Annotation>,
    conflicts: &mut Vec<Conflict>,
) {
    let unit = item.box_unit.as_ref().map(|(u, _)| *u);
    let mut taken: BTreeMap<&str, Vec<bool>> =
        item.boxes.iter().map(|(a, list)| (*a, vec![false; list.len()])).collect();
    for (seed_annotator, list) in &item.boxes {
        for (seed_index, (seed, _)) in list.iter().enumerate() {
            if taken.get(seed_annotator).and_then(|t| t.get(seed_index)).copied().unwrap_or(true) {
                continue;
            }
            let mut group: BTreeMap<&str, usize> = BTreeMap::from([(*seed_annotator, seed_index)]);
            for (other, others) in &item.boxes {
                if other == seed_annotator {
                    continue;
                }
                let best = others
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| {
                        !taken.get(other).and_then(|t| t.get(*i)).copied().unwrap_or(true)
                    })
                    .map(|(i, (rect, _))| (i, iou(seed, rect)))
                    .filter(|(_, overlap)| *overlap >= IOU_THRESHOLD)
                    .max_by(|a, b| a.1.total_cmp(&b.1));
                if let Some((i, _)) = best {
                    group.insert(*other, i);
                }
            }
            for (annotator, index) in &group {
                if let Some(slot) = taken.get_mut(annotator).and_then(|t| t.get_mut(*index)) {
                    *slot = true;
                }
            }
            let votes: Votes = item
                .annotators
                .iter()
                .map(|a| {
                    let category = group
                        .get(a)
                        .and_then(|i| item.boxes.get(a).and_then(|l| l.get(*i)))
                        .map_or(Category::NoBox, |(_, label)| Category::Label((*label).to_owned()));
                    ((*a).to_owned(), category)
                })
                .collect();
            match rule.decide(&votes) {
                Ok(category) => {
                    collected.decided += 1;
                    if let Category::Label(label) = category {
                        // The decided box: the mean of the boxes that carry the decided label.
                        let chosen: Vec<[f64; 4]> = group
                            .iter()
                            .filter_map(|(a, i)| item.boxes.get(a).and_then(|l| l.get(*i)))
                            .filter(|(_, l)| *l == label)
                            .map(|(rect, _)| *rect)
                            .collect();
                        let n = chosen.len().max(1) as f64;
                        let mean = |k: usize| chosen.iter().map(|r| r[k]).sum::<f64>() / n;
                        collected.written += 1;
                        labels.push(Annotation {
                            kind: AnnotationKind::Box,
                            label: Some(label),
                            unit,
                            x: Some(mean(0)),
                            y: Some(mean(1)),
                            width: Some(mean(2)),
                            height: Some(mean(3)),
                            ..template.clone()
                        });
                    }
                }
                Err(reason) => {
                    collected.conflicts += 1;
                    conflicts.push(Conflict {
                        item: template.item.clone(),
                        kind: AnnotationKind::Box,
                        start: None,
                        end: None,
                        rect: Some(*seed),
                        votes: display_votes(&votes),
                        reason,
                    });
                }
            }
            collected.votes.push(votes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotate::{AnnotationFormat, import, read_table, to_json_lines};

    /// Imports `text` as `annotator`'s and reads the table back as the merge would.
    fn table(format: AnnotationFormat, annotator: &str, text: &str) -> Table {
        let rows = import(format, annotator, text.as_bytes(), annotator).unwrap().rows;
        read_table(&format!("{annotator}/annotations.jsonl"), &to_json_lines(&rows).unwrap())
            .unwrap()
    }

    /// One JSON-lines record per (id, class) — classes are written as a span over the whole
    /// text is not what we want, so classes come from Label Studio choices.
    fn choices(annotator: u32, labels: &[&str]) -> String {
        let tasks: Vec<String> = labels
            .iter()
            .enumerate()
            .map(|(i, label)| {
                format!(
                    r#"{{"id": {i}, "data": {{"text": "item {i}"}}, "annotations": [{{"completed_by": {annotator}, "result": [{{"type": "choices", "value": {{"choices": ["{label}"]}}}}]}}]}}"#
                )
            })
            .collect();
        format!("[{}]", tasks.join(","))
    }

    fn classes(sets: &[&[&str]]) -> Vec<Table> {
        sets.iter()
            .enumerate()
            .map(|(a, labels)| {
                table(
                    AnnotationFormat::LabelStudio,
                    &format!("t{a}"),
                    &choices(a as u32 + 1, labels),
                )
            })
            .collect()
    }

    #[test]
    fn two_annotators_agree_by_cohen_and_the_rule_decides() {
        let a: &[&str] = &["yes", "yes", "no", "no", "yes", "no"];
        let b: &[&str] = &["yes", "no", "no", "no", "yes", "yes"];
        let tables = classes(&[a, b]);
        let merged = merge(&tables, &Adjudication::Majority).unwrap();
        let agreement = merged.summary.classes.clone().unwrap();
        assert_eq!(merged.summary.annotators, ["1", "2"]);
        assert_eq!(agreement.statistic, Some(Statistic::Cohen));
        // p_o = 4/6; p_e = (3·3 + 3·3)/36 = 1/2; κ = (2/3 − 1/2)/(1/2) = 1/3.
        assert!((agreement.kappa.unwrap() - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!((agreement.units, agreement.partial), (6, 0));
        assert_eq!(agreement.labels["yes"].units, 4);
        assert_eq!(agreement.labels["yes"].unanimous, 2);
        // Two annotators: a majority needs both; disagreements are conflicts, not guesses.
        assert_eq!((agreement.decided, agreement.conflicts), (4, 2));
        assert_eq!(merged.labels.len(), 4);
        assert!(merged.labels.iter().all(|l| l.annotator == ADJUDICATED));
        assert_eq!(merged.conflicts[0].item, "1");
        assert_eq!(merged.conflicts[0].reason, "tie: no 1, yes 1");
        assert_eq!(merged.conflicts[0].votes["2"], "no");
        // annotator:2 takes 2's label everywhere.
        let merged = merge(&tables, &Adjudication::Annotator("2".into())).unwrap();
        let labels: Vec<_> = merged.labels.iter().map(|l| l.label.as_deref().unwrap()).collect();
        assert_eq!(labels, b);
        assert!(merged.conflicts.is_empty());
    }

    #[test]
    fn three_annotators_agree_by_fleiss_and_majority_needs_more_than_half() {
        let tables =
            classes(&[&["a", "a", "a", "b"], &["a", "b", "c", "b"], &["a", "b", "d", "b"]]);
        let merged = merge(&tables, &Adjudication::Majority).unwrap();
        let agreement = merged.summary.classes.clone().unwrap();
        assert_eq!(agreement.statistic, Some(Statistic::Fleiss));
        let direct = kappa(&[
            vec!["a", "a", "a"],
            vec!["a", "b", "b"],
            vec!["a", "c", "d"],
            vec!["b", "b", "b"],
        ])
        .unwrap()
        .kappa
        .unwrap();
        assert!((agreement.kappa.unwrap() - direct).abs() < 1e-12);
        let labels: Vec<_> =
            merged.labels.iter().map(|l| (l.item.as_str(), l.label.as_deref().unwrap())).collect();
        assert_eq!(labels, [("0", "a"), ("1", "b"), ("3", "b")]);
        assert_eq!(merged.conflicts.len(), 1);
        assert!(
            merged.conflicts[0].reason.starts_with("tie: a 1, c 1, d 1"),
            "{:?}",
            merged.conflicts
        );
        let unanimous = merge(&tables, &Adjudication::Unanimous).unwrap();
        assert_eq!(unanimous.labels.len(), 2);
        assert!(unanimous.conflicts[0].reason.starts_with("not unanimous"));
    }

    #[test]
    fn majority_and_plurality_differ_when_the_top_label_has_half_or_less() {
        let votes: Votes = [("a", "x"), ("b", "x"), ("c", "y"), ("d", "z")]
            .into_iter()
            .map(|(a, l)| (a.to_owned(), Category::Label(l.to_owned())))
            .collect();
        assert!(Adjudication::Majority.decide(&votes).unwrap_err().starts_with("no majority of 4"));
        assert_eq!(Adjudication::Plurality.decide(&votes), Ok(Category::Label("x".into())));
        assert!(Adjudication::Annotator("e".into()).decide(&votes).is_err());
    }

    #[test]
    fn spans_are_compared_token_by_token_and_rebuilt_from_the_decided_tags() {
        let ann = "Ann B-PER\nLee I-PER\nin O\nOslo B-LOC\n";
        let bo = "Ann B-PER\nLee I-PER\nin O\nOslo B-ORG\n";
        let cy = "Ann B-PER\nLee O\nin O\nOslo B-ORG\n";
        let tables = [
            table(AnnotationFormat::Conll, "ann", ann),
            table(AnnotationFormat::Conll, "bo", bo),
            table(AnnotationFormat::Conll, "cy", cy),
        ];
        let merged = merge(&tables, &Adjudication::Majority).unwrap();
        let spans = merged.summary.spans.clone().unwrap();
        assert_eq!(
            (spans.unit.as_str(), spans.units, spans.statistic),
            ("token", 4, Some(Statistic::Fleiss))
        );
        let direct = kappa(&[
            vec!["B-PER"; 3],
            vec!["I-PER", "I-PER", "O"],
            vec!["O"; 3],
            vec!["B-LOC", "B-ORG", "B-ORG"],
        ])
        .unwrap()
        .kappa;
        assert_eq!(spans.kappa, direct);
        let got: Vec<_> = merged
            .labels
            .iter()
            .map(|l| (l.label.as_deref().unwrap(), l.start.unwrap(), l.end.unwrap()))
            .collect();
        assert_eq!(got, [("PER", 0, 2), ("ORG", 3, 4)]);
        assert!(merged.labels.iter().all(|l| l.unit == Some(Unit::Token) && l.length == Some(4)));
        // Unanimous: "Lee" and "Oslo" are conflicts, each its own run; "Ann" alone is a span.
        let merged = merge(&tables, &Adjudication::Unanimous).unwrap();
        assert_eq!(merged.labels.len(), 1);
        assert_eq!((merged.labels[0].start, merged.labels[0].end), (Some(0), Some(1)));
        let runs: Vec<_> =
            merged.conflicts.iter().map(|c| (c.start.unwrap(), c.end.unwrap())).collect();
        assert_eq!(runs, [(1, 2), (3, 4)]);
        assert_eq!(merged.conflicts[0].votes["cy"], "O");
    }

    #[test]
    fn boxes_group_by_iou_and_a_missing_box_is_a_vote() {
        let coco = |boxes: &[(u32, [f64; 4])]| {
            let annotations: Vec<String> = boxes
                .iter()
                .map(|(c, b)| {
                    format!(
                        r#"{{"image_id": 1, "category_id": {c}, "bbox": [{}, {}, {}, {}]}}"#,
                        b[0], b[1], b[2], b[3]
                    )
                })
                .collect();
            format!(
                r#"{{"images": [{{"id": 1, "file_name": "x.png", "width": 100, "height": 100}}, {{"id": 2, "file_name": "y.png"}}],
                    "categories": [{{"id": 1, "name": "cat"}}, {{"id": 2, "name": "dog"}}],
                    "annotations": [{}]}}"#,
                annotations.join(",")
            )
        };
        let tables = [
            table(
                AnnotationFormat::Coco,
                "ann",
                &coco(&[(1, [10.0, 10.0, 20.0, 20.0]), (2, [60.0, 60.0, 10.0, 10.0])]),
            ),
            table(AnnotationFormat::Coco, "bo", &coco(&[(1, [12.0, 10.0, 20.0, 20.0])])),
            table(
                AnnotationFormat::Coco,
                "cy",
                &coco(&[(2, [11.0, 11.0, 20.0, 20.0]), (2, [80.0, 0.0, 5.0, 5.0])]),
            ),
        ];
        let merged = merge(&tables, &Adjudication::Majority).unwrap();
        let boxes = merged.summary.boxes.clone().unwrap();
        // Groups: the cat/cat/dog box, ann's lone dog, cy's lone dog.
        assert_eq!((boxes.units, boxes.decided, boxes.conflicts, boxes.written), (3, 3, 0, 1));
        assert_eq!(merged.labels.len(), 1);
        let cat = &merged.labels[0];
        assert_eq!(
            (cat.label.as_deref(), cat.x, cat.unit),
            (Some("cat"), Some(11.0), Some(Unit::Pixel))
        );
        assert_eq!(boxes.labels["dog"].units, 3);
        let votes: Vec<_> = merged.summary.annotators.clone();
        assert_eq!(votes, ["ann", "bo", "cy"]);
        // annotator:cy keeps cy's two dogs.
        let merged = merge(&tables, &Adjudication::Annotator("cy".into())).unwrap();
        assert_eq!(merged.labels.iter().filter(|l| l.label.as_deref() == Some("dog")).count(), 2);
    }

    #[test]
    fn tables_that_cannot_be_merged_are_refused() {
        let spans = |text: &str, spans: &str| {
            format!(r#"{{"id": "n", "text": "{text}", "spans": [{spans}]}}"#)
        };
        let cases: Vec<(Vec<Table>, Adjudication, &str)> = vec![
            (
                vec![
                    table(AnnotationFormat::Spans, "a", &spans("abc", "")),
                    table(AnnotationFormat::Spans, "b", &spans("abd", "")),
                ],
                Adjudication::Majority,
                "did not see the same item",
            ),
            (
                vec![table(
                    AnnotationFormat::Spans,
                    "a",
                    &spans(
                        "abcd",
                        r#"{"start": 0, "end": 2, "label": "X"}, {"start": 1, "end": 3, "label": "Y"}"#,
                    ),
                )],
                Adjudication::Majority,
                "overlaps another span of annotator \"a\"",
            ),
            (
                classes(&[&["x"], &["y"]]),
                Adjudication::Annotator("9".into()),
                "annotator \"9\" is not in the tables",
            ),
            (
                vec![
                    table(AnnotationFormat::LabelStudio, "a", &choices(1, &["x"])),
                    table(AnnotationFormat::LabelStudio, "b", &choices(1, &["y"])),
                ],
                Adjudication::Majority,
                "annotator \"1\" gave it class \"x\" (a/annotations.jsonl, line 1) and \"y\" (b/annotations.jsonl, line 1)",
            ),
        ];
        for (tables, rule, expected) in cases {
            let error = merge(&tables, &rule).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}\nexpected {expected:?}");
        }
        // Boxes of one image in pixels and in percent.
        let mut mixed = table(
            AnnotationFormat::Coco,
            "a",
            r#"{"images": [{"id": 1, "file_name": "1"}], "categories": [{"id": 1, "name": "c"}], "annotations": [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5]}]}"#,
        );
        let mut percent = mixed.clone();
        percent.rows[0].1.unit = Some(Unit::Percent);
        percent.rows[0].1.annotator = "b".into();
        mixed.rows.extend(percent.rows);
        let error = merge(&[mixed.clone()], &Adjudication::Majority).unwrap_err().to_string();
        assert!(error.contains("gives a box in unit percent but"), "{error}");
        // A span row without its offsets.
        mixed = table(AnnotationFormat::Conll, "a", "x B-X\n");
        mixed.rows[0].1.end = None;
        let error = merge(&[mixed], &Adjudication::Majority).unwrap_err().to_string();
        assert!(
            error.contains("a/annotations.jsonl: line 1: a span row without start and end"),
            "{error}"
        );
        for bad in ["most", "annotator:", ""] {
            assert!(bad.parse::<Adjudication>().is_err(), "{bad}");
        }
        assert_eq!(
            "annotator:bo".parse::<Adjudication>().unwrap(),
            Adjudication::Annotator("bo".into())
        );
    }

    #[test]
    fn perfect_agreement_merges_to_kappa_one() {
        let tables = classes(&[&["a", "b", "c"], &["a", "b", "c"]]);
        let merged = merge(&tables, &Adjudication::Unanimous).unwrap();
        let agreement = merged.summary.classes.unwrap();
        assert_eq!(agreement.kappa, Some(1.0));
        assert!(agreement.labels.values().all(|l| l.kappa == Some(1.0)));
        assert!(merged.conflicts.is_empty());
    }
}
