//! The four export formats, each read by its own structure into [`Annotation`] rows. A record
//! that does not fit is an error naming the file, the record and the field.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::{Annotation, AnnotationFormat, AnnotationKind, Imported, Item, Unit, sha256_hex};
use crate::error::{DataError, shorten};

/// How far a COCO box may reach past its image's declared width or height, in pixels: exports
/// round coordinates, so a box a fraction of a pixel over the edge is taken.
pub const COCO_EDGE_TOLERANCE: f64 = 1.0;

/// How far a Label Studio rectangle may reach past 100 % (rounding of the tool's floats).
const PERCENT_TOLERANCE: f64 = 1e-6;

/// Reads `bytes`, an export in `format` from `file` (named in errors). Annotations that do not
/// name their annotator are `default_annotator`'s (Label Studio's always do: `completed_by`).
pub fn import(
    format: AnnotationFormat,
    file: &str,
    bytes: &[u8],
    default_annotator: &str,
) -> Result<Imported, DataError> {
    let reader = Reader { file, default_annotator };
    let imported = match format {
        AnnotationFormat::LabelStudio => reader.label_studio(bytes)?,
        AnnotationFormat::Coco => reader.coco(bytes)?,
        AnnotationFormat::Conll => reader.conll(bytes)?,
        AnnotationFormat::Spans => reader.spans(bytes)?,
    };
    if imported.rows.is_empty() {
        return Err(reader.error(
            "the file",
            format!(
                "holds no annotations ({} item(s) unannotated, {} cancelled)",
                imported.unannotated, imported.cancelled
            ),
        ));
    }
    Ok(imported)
}

struct Reader<'a> {
    file: &'a str,
    default_annotator: &'a str,
}

/// A JSON value's type, for messages.
fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `value` as canonical JSON (object keys sorted at every level), for item digests.
fn canonical(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let sorted: BTreeMap<&String, String> =
                map.iter().map(|(k, v)| (k, canonical(v))).collect();
            let fields: Vec<String> = sorted
                .iter()
                .map(|(k, v)| format!("{}:{v}", Value::String((*k).clone())))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => {
            format!("[{}]", items.iter().map(canonical).collect::<Vec<_>>().join(","))
        }
        other => other.to_string(),
    }
}

/// A text item's id and content digest, lengths in characters.
fn text_item(id: String, text: &str) -> Item {
    Item {
        id,
        sha256: sha256_hex(text.as_bytes()),
        unit: Some(Unit::Char),
        length: Some(text.chars().count() as u64),
    }
}

impl Reader<'_> {
    fn error(&self, at: impl Into<String>, reason: impl Into<String>) -> DataError {
        DataError::Annotation { file: self.file.to_owned(), at: at.into(), reason: reason.into() }
    }

    fn json(&self, bytes: &[u8]) -> Result<Value, DataError> {
        serde_json::from_slice(bytes).map_err(|e| self.error("the file", format!("not JSON: {e}")))
    }

    fn field<'v>(
        &self,
        object: &'v Map<String, Value>,
        at: &str,
        name: &str,
    ) -> Result<&'v Value, DataError> {
        object.get(name).ok_or_else(|| self.error(at, format!("field {name:?} is missing")))
    }

    fn object<'v>(&self, value: &'v Value, at: &str) -> Result<&'v Map<String, Value>, DataError> {
        value.as_object().ok_or_else(|| {
            self.error(at, format!("expected an object, found {}", type_name(value)))
        })
    }

    fn array<'v>(
        &self,
        object: &'v Map<String, Value>,
        at: &str,
        name: &str,
    ) -> Result<&'v Vec<Value>, DataError> {
        let value = self.field(object, at, name)?;
        value.as_array().ok_or_else(|| {
            self.error(at, format!("field {name:?} must be an array, not {}", type_name(value)))
        })
    }

    fn text<'v>(
        &self,
        object: &'v Map<String, Value>,
        at: &str,
        name: &str,
    ) -> Result<&'v str, DataError> {
        let value = self.field(object, at, name)?;
        match value.as_str() {
            Some(text) if !text.trim().is_empty() => Ok(text),
            Some(_) => Err(self.error(at, format!("field {name:?} is empty"))),
            None => Err(self
                .error(at, format!("field {name:?} must be a string, not {}", type_name(value)))),
        }
    }

    fn offset(&self, object: &Map<String, Value>, at: &str, name: &str) -> Result<u64, DataError> {
        let value = self.field(object, at, name)?;
        value.as_u64().ok_or_else(|| {
            self.error(
                at,
                format!(
                    "field {name:?} must be a non-negative integer, not {}",
                    shorten_json(value)
                ),
            )
        })
    }

    fn number(&self, object: &Map<String, Value>, at: &str, name: &str) -> Result<f64, DataError> {
        let value = self.field(object, at, name)?;
        value.as_f64().filter(|n| n.is_finite()).ok_or_else(|| {
            self.error(at, format!("field {name:?} must be a number, not {}", shorten_json(value)))
        })
    }

    /// An id: a string, or an integer written in decimal.
    fn id(&self, object: &Map<String, Value>, at: &str, name: &str) -> Result<String, DataError> {
        let value = self.field(object, at, name)?;
        match value {
            Value::String(text) if !text.trim().is_empty() => Ok(text.clone()),
            Value::Number(n) if n.is_u64() || n.is_i64() => Ok(n.to_string()),
            other => Err(self.error(
                at,
                format!(
                    "field {name:?} must be a non-empty string or an integer, not {}",
                    shorten_json(other)
                ),
            )),
        }
    }

    /// A non-empty array of non-empty label strings.
    fn labels(
        &self,
        object: &Map<String, Value>,
        at: &str,
        name: &str,
    ) -> Result<Vec<String>, DataError> {
        let values = self.array(object, at, name)?;
        if values.is_empty() {
            return Err(self.error(at, format!("field {name:?} lists no label")));
        }
        values
            .iter()
            .map(|value| match value.as_str() {
                Some(label) if !label.trim().is_empty() => Ok(label.to_owned()),
                _ => Err(self.error(
                    at,
                    format!("field {name:?} holds {}, not a label", shorten_json(value)),
                )),
            })
            .collect()
    }

    /// Checks a character span against its text (and the text the tool says it covers).
    fn check_span(
        &self,
        at: &str,
        text: &str,
        start: u64,
        end: u64,
        quoted: Option<&Value>,
    ) -> Result<(), DataError> {
        let length = text.chars().count() as u64;
        if start >= end {
            return Err(self.error(at, format!("span {start}..{end} is empty or reversed")));
        }
        if end > length {
            return Err(self.error(
                at,
                format!(
                    "span {start}..{end} ends outside the text of {length} characters (offsets \
                     count characters)"
                ),
            ));
        }
        if let Some(quoted) = quoted {
            let covered: String =
                text.chars().skip(start as usize).take((end - start) as usize).collect();
            if quoted.as_str() != Some(covered.as_str()) {
                return Err(self.error(
                    at,
                    format!(
                        "field \"text\" is {} but characters {start}..{end} of the text are {:?} \
                         (offsets count characters, not bytes or UTF-16 units)",
                        shorten_json(quoted),
                        shorten(&covered)
                    ),
                ));
            }
        }
        Ok(())
    }

    fn label_studio(&self, bytes: &[u8]) -> Result<Imported, DataError> {
        let root = self.json(bytes)?;
        let tasks = root.as_array().ok_or_else(|| {
            self.error(
                "the file",
                format!(
                    "expected the array of tasks Label Studio exports (JSON format), found {}",
                    type_name(&root)
                ),
            )
        })?;
        let mut imported = Imported::default();
        for (t, task) in tasks.iter().enumerate() {
            let at = format!("task {}", t + 1);
            let task = self.object(task, &at)?;
            let id = self.id(task, &at, "id")?;
            let at = format!("task {} (id {id})", t + 1);
            let data = self.object(self.field(task, &at, "data")?, &format!("{at}, field data"))?;
            let text = data.get("text").and_then(Value::as_str);
            let item = match text {
                Some(text) => text_item(id, text),
                None => Item {
                    id,
                    sha256: sha256_hex(canonical(&Value::Object(data.clone())).as_bytes()),
                    unit: None,
                    length: None,
                },
            };
            let annotations = self.array(task, &at, "annotations")?;
            if annotations.is_empty() {
                imported.unannotated += 1;
            }
            for (a, annotation) in annotations.iter().enumerate() {
                let at = format!("{at}, annotation {}", a + 1);
                let annotation = self.object(annotation, &at)?;
                if annotation.get("was_cancelled").and_then(Value::as_bool) == Some(true) {
                    imported.cancelled += 1;
                    continue;
                }
                let annotator = self.completed_by(annotation, &at)?;
                let results = self.array(annotation, &at, "result")?;
                let record = t as u64 + 1;
                if results.is_empty() {
                    imported.rows.push(Annotation::new(
                        &item,
                        &annotator,
                        AnnotationKind::None,
                        self.file,
                        record,
                    ));
                }
                for (r, result) in results.iter().enumerate() {
                    let at = format!("{at}, result {}", r + 1);
                    let result = self.object(result, &at)?;
                    let kind = self.text(result, &at, "type")?;
                    let value =
                        self.object(self.field(result, &at, "value")?, &format!("{at}, value"))?;
                    let at = format!("{at} ({kind}), value");
                    let row = |kind| Annotation::new(&item, &annotator, kind, self.file, record);
                    match kind {
                        "choices" => {
                            for label in self.labels(value, &at, "choices")? {
                                imported.rows.push(Annotation {
                                    label: Some(label),
                                    ..row(AnnotationKind::Class)
                                });
                            }
                        }
                        "labels" => {
                            let text = text.ok_or_else(|| {
                                self.error(
                                    &at,
                                    "a text span, but the task's data has no string \"text\" for \
                                     it to refer to",
                                )
                            })?;
                            let start = self.offset(value, &at, "start")?;
                            let end = self.offset(value, &at, "end")?;
                            self.check_span(&at, text, start, end, value.get("text"))?;
                            for label in self.labels(value, &at, "labels")? {
                                imported.rows.push(Annotation {
                                    label: Some(label),
                                    start: Some(start),
                                    end: Some(end),
                                    ..row(AnnotationKind::Span)
                                });
                            }
                        }
                        "rectanglelabels" => {
                            let [x, y, width, height] = ["x", "y", "width", "height"]
                                .map(|name| self.number(value, &at, name));
                            let (x, y, width, height) = (x?, y?, width?, height?);
                            if let Some(rotation) = value.get("rotation")
                                && rotation.as_f64() != Some(0.0)
                            {
                                return Err(self.error(
                                    &at,
                                    format!(
                                        "field \"rotation\" is {}: rotated rectangles are not \
                                         compared (only rotation 0)",
                                        shorten_json(rotation)
                                    ),
                                ));
                            }
                            self.check_box(&at, [x, y, width, height], (100.0, 100.0), "%")?;
                            for label in self.labels(value, &at, "rectanglelabels")? {
                                imported.rows.push(Annotation {
                                    label: Some(label),
                                    unit: Some(Unit::Percent),
                                    length: None,
                                    x: Some(x),
                                    y: Some(y),
                                    width: Some(width),
                                    height: Some(height),
                                    ..row(AnnotationKind::Box)
                                });
                            }
                        }
                        other => {
                            return Err(self.error(
                                at,
                                format!(
                                    "result type {other:?} is not imported (choices, labels, \
                                     rectanglelabels are)"
                                ),
                            ));
                        }
                    }
                }
            }
        }
        Ok(imported)
    }

    /// Label Studio's `completed_by`: a user id, or an object with the user's `email` or `id`.
    fn completed_by(&self, annotation: &Map<String, Value>, at: &str) -> Result<String, DataError> {
        let value = self.field(annotation, at, "completed_by")?;
        let name = match value {
            Value::Number(n) if n.is_u64() || n.is_i64() => Some(n.to_string()),
            Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
            Value::Object(user) => match (user.get("email"), user.get("id")) {
                (Some(Value::String(email)), _) if !email.trim().is_empty() => Some(email.clone()),
                (_, Some(Value::Number(n))) if n.is_u64() || n.is_i64() => Some(n.to_string()),
                _ => None,
            },
            _ => None,
        };
        name.ok_or_else(|| {
            self.error(
                at,
                format!(
                    "field \"completed_by\" is {}: expected a user id or an object with an email \
                     or id",
                    shorten_json(value)
                ),
            )
        })
    }

    /// Checks a box `[x, y, width, height]` lies inside `(width, height)`.
    fn check_box(
        &self,
        at: &str,
        [x, y, width, height]: [f64; 4],
        (limit_w, limit_h): (f64, f64),
        unit: &str,
    ) -> Result<(), DataError> {
        let tolerance = if unit == "%" { PERCENT_TOLERANCE } else { COCO_EDGE_TOLERANCE };
        if !(width > 0.0 && height > 0.0) {
            return Err(self.error(at, format!("box {width}x{height} has no area")));
        }
        if x < 0.0 || y < 0.0 {
            return Err(self.error(at, format!("box corner ({x}, {y}) is outside the image")));
        }
        if x + width > limit_w + tolerance || y + height > limit_h + tolerance {
            return Err(self.error(
                at,
                format!(
                    "box ({x}, {y}) + {width}x{height} reaches past the image's \
                     {limit_w}{unit} x {limit_h}{unit}"
                ),
            ));
        }
        Ok(())
    }

    fn coco(&self, bytes: &[u8]) -> Result<Imported, DataError> {
        let root = self.json(bytes)?;
        let root = self.object(&root, "the file")?;
        let mut categories = BTreeMap::new();
        for (c, category) in self.array(root, "the file", "categories")?.iter().enumerate() {
            let at = format!("categories[{c}]");
            let category = self.object(category, &at)?;
            let id = self.integer(category, &at, "id")?;
            let name = self.text(category, &at, "name")?;
            if categories.insert(id, name.to_owned()).is_some() {
                return Err(self.error(at, format!("category id {id} is used twice")));
            }
        }
        struct Image {
            item: Item,
            size: Option<(f64, f64)>,
            annotated: bool,
        }
        let mut images = BTreeMap::new();
        let mut names = BTreeSet::new();
        for (i, image) in self.array(root, "the file", "images")?.iter().enumerate() {
            let at = format!("images[{i}]");
            let image = self.object(image, &at)?;
            let id = self.integer(image, &at, "id")?;
            let name = self.text(image, &at, "file_name")?;
            let size = match (image.get("width"), image.get("height")) {
                (None, None) => None,
                _ => {
                    let (w, h) =
                        (self.number(image, &at, "width")?, self.number(image, &at, "height")?);
                    if !(w > 0.0 && h > 0.0) {
                        return Err(self.error(at, format!("image size {w}x{h} has no area")));
                    }
                    Some((w, h))
                }
            };
            if !names.insert(name.to_owned()) {
                return Err(self.error(at, format!("file_name {name:?} is listed twice")));
            }
            let item = Item {
                id: name.to_owned(),
                sha256: sha256_hex(name.as_bytes()),
                unit: None,
                length: None,
            };
            if images.insert(id, Image { item, size, annotated: false }).is_some() {
                return Err(self.error(at, format!("image id {id} is used twice")));
            }
        }
        let mut imported = Imported::default();
        let mut named_annotators = false;
        for (a, annotation) in self.array(root, "the file", "annotations")?.iter().enumerate() {
            let at = format!("annotations[{a}]");
            let annotation = self.object(annotation, &at)?;
            let image_id = self.integer(annotation, &at, "image_id")?;
            let category_id = self.integer(annotation, &at, "category_id")?;
            let image = images.get_mut(&image_id).ok_or_else(|| {
                self.error(&at, format!("image_id {image_id} is not in \"images\""))
            })?;
            let label = categories.get(&category_id).ok_or_else(|| {
                self.error(&at, format!("category_id {category_id} is not in \"categories\""))
            })?;
            let bbox = self.array(annotation, &at, "bbox")?;
            let bbox: Vec<f64> = bbox.iter().filter_map(Value::as_f64).collect();
            let [x, y, width, height] = bbox[..] else {
                return Err(
                    self.error(at, "field \"bbox\" must be four numbers [x, y, width, height]")
                );
            };
            let limit = image.size.unwrap_or((f64::INFINITY, f64::INFINITY));
            self.check_box(&at, [x, y, width, height], limit, "px")?;
            let annotator = match annotation.get("annotator") {
                None => self.default_annotator.to_owned(),
                Some(_) => {
                    named_annotators = true;
                    self.text(annotation, &at, "annotator")?.to_owned()
                }
            };
            image.annotated = true;
            imported.rows.push(Annotation {
                label: Some(label.clone()),
                unit: Some(Unit::Pixel),
                x: Some(x),
                y: Some(y),
                width: Some(width),
                height: Some(height),
                ..Annotation::new(
                    &image.item,
                    &annotator,
                    AnnotationKind::Box,
                    self.file,
                    a as u64 + 1,
                )
            });
        }
        for (position, image) in images.values().enumerate() {
            if image.annotated {
                continue;
            }
            if named_annotators {
                // Which of the named annotators saw it, the file cannot say.
                imported.unannotated += 1;
            } else {
                imported.rows.push(Annotation::new(
                    &image.item,
                    self.default_annotator,
                    AnnotationKind::None,
                    self.file,
                    position as u64 + 1,
                ));
            }
        }
        Ok(imported)
    }

    fn integer(&self, object: &Map<String, Value>, at: &str, name: &str) -> Result<i64, DataError> {
        let value = self.field(object, at, name)?;
        value.as_i64().ok_or_else(|| {
            self.error(
                at,
                format!("field {name:?} must be an integer, not {}", shorten_json(value)),
            )
        })
    }

    fn conll(&self, bytes: &[u8]) -> Result<Imported, DataError> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let line = bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1;
            self.error(format!("line {line}"), "invalid UTF-8")
        })?;
        let mut imported = Imported::default();
        let mut sentence: Vec<(u64, String, String)> = Vec::new();
        let mut sentences = 0u64;
        let mut flush = |sentence: &mut Vec<(u64, String, String)>,
                         imported: &mut Imported|
         -> Result<(), DataError> {
            if sentence.is_empty() {
                return Ok(());
            }
            sentences += 1;
            let rows = self.conll_sentence(sentences, sentence)?;
            imported.rows.extend(rows);
            sentence.clear();
            Ok(())
        };
        for (index, line) in text.lines().enumerate() {
            let number = index as u64 + 1;
            let mut columns = line.split_whitespace();
            let Some(token) = columns.next() else {
                flush(&mut sentence, &mut imported)?;
                continue;
            };
            if token == "-DOCSTART-" {
                flush(&mut sentence, &mut imported)?;
                continue;
            }
            let Some(tag) = columns.last() else {
                return Err(self.error(
                    format!("line {number}"),
                    format!(
                        "{:?} has no tag: expected a token and its tag, the tag last",
                        shorten(line)
                    ),
                ));
            };
            sentence.push((number, token.to_owned(), tag.to_owned()));
        }
        flush(&mut sentence, &mut imported)?;
        Ok(imported)
    }

    /// One CoNLL sentence's spans, its tags read as strict IOB2: `O`, `B-TYPE` starts a span,
    /// `I-TYPE` continues one only right after `B-TYPE` or `I-TYPE` of the same type.
    fn conll_sentence(
        &self,
        number: u64,
        tokens: &[(u64, String, String)],
    ) -> Result<Vec<Annotation>, DataError> {
        let words: Vec<&str> = tokens.iter().map(|(_, token, _)| token.as_str()).collect();
        let item = Item {
            id: format!("sentence-{number}"),
            sha256: sha256_hex(words.join(" ").as_bytes()),
            unit: Some(Unit::Token),
            length: Some(tokens.len() as u64),
        };
        let first_line = tokens.first().map_or(0, |(line, _, _)| *line);
        let row = |label: &str, start: usize, end: usize| Annotation {
            label: Some(label.to_owned()),
            start: Some(start as u64),
            end: Some(end as u64),
            ..Annotation::new(
                &item,
                self.default_annotator,
                AnnotationKind::Span,
                self.file,
                first_line,
            )
        };
        let mut rows = Vec::new();
        let mut open: Option<(usize, &str)> = None;
        for (position, (line, _, tag)) in tokens.iter().enumerate() {
            let at = format!("line {line}");
            let typed = |prefix: &str| tag.strip_prefix(prefix).filter(|t| !t.is_empty());
            if tag == "O" {
                if let Some((start, label)) = open.take() {
                    rows.push(row(label, start, position));
                }
            } else if let Some(label) = typed("B-") {
                if let Some((start, open_label)) = open.replace((position, label)) {
                    rows.push(row(open_label, start, position));
                }
            } else if let Some(label) = typed("I-") {
                match open {
                    Some((_, open_label)) if open_label == label => {}
                    Some((_, open_label)) => {
                        return Err(self.error(
                            at,
                            format!(
                                "tag {tag} follows a {open_label} span: IOB2 starts every span \
                                 with B-{label} (IOB1 files must be converted first)"
                            ),
                        ));
                    }
                    None => {
                        let after = if position == 0 { "the sentence start" } else { "O" };
                        return Err(self.error(
                            at,
                            format!(
                                "tag {tag} follows {after}: IOB2 starts every span with \
                                 B-{label} (IOB1 files must be converted first)"
                            ),
                        ));
                    }
                }
            } else {
                return Err(self.error(
                    at,
                    format!("tag {:?} is not O, B-TYPE or I-TYPE (IOB2)", shorten(tag)),
                ));
            }
        }
        if let Some((start, label)) = open {
            rows.push(row(label, start, tokens.len()));
        }
        if rows.is_empty() {
            rows.push(Annotation::new(
                &item,
                self.default_annotator,
                AnnotationKind::None,
                self.file,
                first_line,
            ));
        }
        Ok(rows)
    }

    fn spans(&self, bytes: &[u8]) -> Result<Imported, DataError> {
        let mut imported = Imported::default();
        let mut ids = BTreeMap::new();
        for (index, line) in bytes.split(|&b| b == b'\n').enumerate() {
            let number = index as u64 + 1;
            let at = format!("line {number}");
            let line = std::str::from_utf8(line).map_err(|e| {
                self.error(&at, format!("invalid UTF-8 at byte {}", e.valid_up_to()))
            })?;
            if line.trim().is_empty() {
                continue;
            }
            let record: Value = serde_json::from_str(line)
                .map_err(|e| self.error(&at, format!("not JSON: {e}")))?;
            let record = self.object(&record, &at)?;
            let id = self.id(record, &at, "id")?;
            let text = self.text(record, &at, "text")?;
            let annotator = match record.get("annotator") {
                None | Some(Value::Null) => self.default_annotator.to_owned(),
                Some(_) => self.text(record, &at, "annotator")?.to_owned(),
            };
            if let Some(first) = ids.insert((id.clone(), annotator.clone()), number) {
                return Err(self.error(
                    at,
                    format!("id {id:?} of annotator {annotator:?} was already on line {first}"),
                ));
            }
            let item = text_item(id, text);
            let spans = self.array(record, &at, "spans")?;
            if spans.is_empty() {
                imported.rows.push(Annotation::new(
                    &item,
                    &annotator,
                    AnnotationKind::None,
                    self.file,
                    number,
                ));
            }
            for (s, span) in spans.iter().enumerate() {
                let at = format!("{at}, spans[{s}]");
                let span = self.object(span, &at)?;
                let start = self.offset(span, &at, "start")?;
                let end = self.offset(span, &at, "end")?;
                let label = self.text(span, &at, "label")?;
                self.check_span(&at, text, start, end, span.get("text"))?;
                imported.rows.push(Annotation {
                    label: Some(label.to_owned()),
                    start: Some(start),
                    end: Some(end),
                    ..Annotation::new(&item, &annotator, AnnotationKind::Span, self.file, number)
                });
            }
        }
        Ok(imported)
    }
}

/// A JSON value shortened for a message.
fn shorten_json(value: &Value) -> String {
    shorten(&value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(format: AnnotationFormat, text: &str) -> Result<Imported, DataError> {
        import(format, "in.file", text.as_bytes(), "ann")
    }

    const LABEL_STUDIO: &str = r#"[
      {"id": 7, "data": {"text": "Zoë met Ann in Oslo"},
       "annotations": [
         {"completed_by": 1, "result": [
            {"type": "choices", "value": {"choices": ["travel"]}},
            {"type": "labels", "value": {"start": 0, "end": 3, "text": "Zoë", "labels": ["PER"]}},
            {"type": "labels", "value": {"start": 15, "end": 19, "labels": ["LOC"]}}]},
         {"completed_by": {"id": 2, "email": "bo@example.org"}, "result": []},
         {"completed_by": 3, "was_cancelled": true, "result": []}]},
      {"id": "img-1", "data": {"image": "/data/cat.png"},
       "annotations": [{"completed_by": 1, "result": [
         {"type": "rectanglelabels", "original_width": 640,
          "value": {"x": 10, "y": 20.5, "width": 30, "height": 40, "rotation": 0,
                    "rectanglelabels": ["cat"]}}]}]},
      {"id": 9, "data": {"text": "nobody"}, "annotations": []}
    ]"#;

    #[test]
    fn label_studio_choices_spans_and_rectangles() {
        let imported = read(AnnotationFormat::LabelStudio, LABEL_STUDIO).unwrap();
        assert_eq!((imported.cancelled, imported.unannotated), (1, 1));
        let rows = &imported.rows;
        assert_eq!(rows.len(), 5, "{rows:#?}");
        assert_eq!(
            (rows[0].kind, rows[0].label.as_deref()),
            (AnnotationKind::Class, Some("travel"))
        );
        assert_eq!(rows[0].annotator, "1");
        assert_eq!(
            (rows[1].start, rows[1].end, rows[1].unit),
            (Some(0), Some(3), Some(Unit::Char))
        );
        assert_eq!(rows[1].length, Some(19));
        assert_eq!((rows[2].label.as_deref(), rows[2].start), (Some("LOC"), Some(15)));
        assert_eq!(
            (rows[3].kind, rows[3].annotator.as_str()),
            (AnnotationKind::None, "bo@example.org")
        );
        assert_eq!(rows[3].item_sha256, rows[0].item_sha256);
        let rect = &rows[4];
        assert_eq!(
            (rect.item.as_str(), rect.kind, rect.unit),
            ("img-1", AnnotationKind::Box, Some(Unit::Percent))
        );
        assert_eq!(
            (rect.x, rect.y, rect.width, rect.height),
            (Some(10.0), Some(20.5), Some(30.0), Some(40.0))
        );
        assert_eq!(rect.record, 2);
    }

    #[test]
    fn coco_boxes_take_their_category_names_and_unannotated_images_are_seen() {
        let coco = r#"{"images": [{"id": 1, "file_name": "a.png", "width": 100, "height": 50},
                                 {"id": 2, "file_name": "b.png"}],
                       "categories": [{"id": 3, "name": "cat"}, {"id": 4, "name": "dog"}],
                       "annotations": [{"id": 1, "image_id": 1, "category_id": 4,
                                        "bbox": [10, 5, 90.5, 45], "iscrowd": 0}]}"#;
        let rows = read(AnnotationFormat::Coco, coco).unwrap().rows;
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].item.as_str(), rows[0].label.as_deref()), ("a.png", Some("dog")));
        assert_eq!((rows[0].width, rows[0].unit), (Some(90.5), Some(Unit::Pixel)));
        assert_eq!((rows[1].item.as_str(), rows[1].kind), ("b.png", AnnotationKind::None));
        assert!(rows.iter().all(|r| r.annotator == "ann"));
        // Annotations that name their annotator: an image without boxes is not theirs to see.
        let named = coco.replace("\"iscrowd\": 0", "\"annotator\": \"cy\"");
        let imported = read(AnnotationFormat::Coco, &named).unwrap();
        assert_eq!((imported.rows.len(), imported.unannotated), (1, 1));
        assert_eq!(imported.rows[0].annotator, "cy");
    }

    #[test]
    fn conll_sentences_become_token_spans() {
        let conll = "-DOCSTART- -X- -X- O\n\nAnn NNP B-PER\nLee NNP I-PER\nin IN O\nOslo NNP B-LOC\n\n\
                     Hi UH O\n\nBo B-PER\nCy B-PER\n";
        let rows = read(AnnotationFormat::Conll, conll).unwrap().rows;
        let spans: Vec<_> = rows
            .iter()
            .map(|r| (r.item.as_str(), r.kind, r.label.as_deref(), r.start, r.end, r.length))
            .collect();
        assert_eq!(
            spans,
            [
                ("sentence-1", AnnotationKind::Span, Some("PER"), Some(0), Some(2), Some(4)),
                ("sentence-1", AnnotationKind::Span, Some("LOC"), Some(3), Some(4), Some(4)),
                ("sentence-2", AnnotationKind::None, None, None, None, Some(1)),
                ("sentence-3", AnnotationKind::Span, Some("PER"), Some(0), Some(1), Some(2)),
                ("sentence-3", AnnotationKind::Span, Some("PER"), Some(1), Some(2), Some(2)),
            ]
        );
        assert_eq!(rows[0].record, 3);
        assert_eq!(rows[0].unit, Some(Unit::Token));
    }

    #[test]
    fn json_lines_spans_count_characters() {
        let spans = "{\"id\": \"n1\", \"text\": \"café in Zürich\", \"annotator\": \"bo\", \
                     \"spans\": [{\"start\": 8, \"end\": 14, \"label\": \"LOC\", \"text\": \"Zürich\"}]}\n\
                     \n{\"id\": 2, \"text\": \"none here\", \"spans\": []}\n";
        let rows = read(AnnotationFormat::Spans, spans).unwrap().rows;
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].start, rows[0].end, rows[0].length), (Some(8), Some(14), Some(14)));
        assert_eq!(rows[0].annotator, "bo");
        assert_eq!(
            (rows[1].item.as_str(), rows[1].annotator.as_str(), rows[1].record),
            ("2", "ann", 3)
        );
    }

    #[test]
    fn malformed_input_is_refused_naming_file_record_and_field() {
        use AnnotationFormat::{Coco, Conll, LabelStudio, Spans};
        let task = |result: &str| {
            format!(
                r#"[{{"id": 1, "data": {{"text": "abc"}}, "annotations": [{{"completed_by": 1, "result": [{result}]}}]}}]"#
            )
        };
        let coco = |annotation: &str| {
            format!(
                r#"{{"images": [{{"id": 1, "file_name": "a.png", "width": 10, "height": 10}}],
                    "categories": [{{"id": 1, "name": "cat"}}], "annotations": [{annotation}]}}"#
            )
        };
        let cases: Vec<(AnnotationFormat, String, &str)> = vec![
            (LabelStudio, "{}".into(), "expected the array of tasks"),
            (LabelStudio, "[{".into(), "not JSON"),
            (LabelStudio, r#"[{"data": {}, "annotations": []}]"#.into(), "task 1: field \"id\" is missing"),
            (LabelStudio, r#"[{"id": 1, "data": {}, "annotations": {}}]"#.into(), "field \"annotations\" must be an array"),
            (
                LabelStudio,
                r#"[{"id": 1, "data": {}, "annotations": [{"result": []}]}]"#.into(),
                "annotation 1: field \"completed_by\" is missing",
            ),
            (LabelStudio, r#"[{"id": 1, "data": {}, "annotations": []}]"#.into(), "holds no annotations"),
            (
                LabelStudio,
                task(r#"{"type": "labels", "value": {"start": 1, "end": 4, "labels": ["X"]}}"#),
                "result 1 (labels), value: span 1..4 ends outside the text of 3 characters",
            ),
            (
                LabelStudio,
                task(r#"{"type": "labels", "value": {"start": 2, "end": 2, "labels": ["X"]}}"#),
                "empty or reversed",
            ),
            (
                LabelStudio,
                task(r#"{"type": "labels", "value": {"start": 0, "end": 2, "text": "bc", "labels": ["X"]}}"#),
                "field \"text\" is \"bc\" but characters 0..2",
            ),
            (
                LabelStudio,
                task(r#"{"type": "labels", "value": {"start": -1, "end": 2, "labels": ["X"]}}"#),
                "field \"start\" must be a non-negative integer",
            ),
            (LabelStudio, task(r#"{"type": "textarea", "value": {"text": ["x"]}}"#), "result type \"textarea\" is not imported"),
            (LabelStudio, task(r#"{"type": "choices", "value": {"choices": []}}"#), "field \"choices\" lists no label"),
            (LabelStudio, task(r#"{"type": "choices", "value": {"choices": [1]}}"#), "holds 1, not a label"),
            (LabelStudio, task(r#"{"type": "choices"}"#), "field \"value\" is missing"),
            (
                LabelStudio,
                task(r#"{"type": "rectanglelabels", "value": {"x": 80, "y": 0, "width": 30, "height": 5, "rectanglelabels": ["c"]}}"#),
                "reaches past the image's 100% x 100%",
            ),
            (
                LabelStudio,
                task(r#"{"type": "rectanglelabels", "value": {"x": 1, "y": 0, "width": 3, "height": 5, "rotation": 45, "rectanglelabels": ["c"]}}"#),
                "rotated rectangles",
            ),
            (
                LabelStudio,
                r#"[{"id": 1, "data": {"image": "a.png"}, "annotations": [{"completed_by": 1, "result": [{"type": "labels", "value": {"start": 0, "end": 1, "labels": ["X"]}}]}]}]"#.into(),
                "no string \"text\"",
            ),
            (Coco, coco(r#"{"image_id": 1, "category_id": 9, "bbox": [0, 0, 1, 1]}"#), "annotations[0]: category_id 9 is not in \"categories\""),
            (Coco, coco(r#"{"image_id": 2, "category_id": 1, "bbox": [0, 0, 1, 1]}"#), "image_id 2 is not in \"images\""),
            (Coco, coco(r#"{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1]}"#), "four numbers"),
            (Coco, coco(r#"{"image_id": 1, "category_id": 1, "bbox": [0, 0, 0, 1]}"#), "has no area"),
            (Coco, coco(r#"{"image_id": 1, "category_id": 1, "bbox": [5, 0, 7, 1]}"#), "reaches past the image's 10px"),
            (Coco, coco(r#"{"image_id": 1, "category_id": 1, "bbox": [-2, 0, 1, 1]}"#), "outside the image"),
            (Coco, coco(r#"{"image_id": "1", "category_id": 1, "bbox": [0, 0, 1, 1]}"#), "field \"image_id\" must be an integer"),
            (Coco, coco(r#"{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "annotator": ""}"#), "field \"annotator\" is empty"),
            (
                Coco,
                r#"{"images": [], "categories": [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}], "annotations": []}"#.into(),
                "categories[1]: category id 1 is used twice",
            ),
            (
                Coco,
                r#"{"images": [{"id": 1, "file_name": "a"}, {"id": 2, "file_name": "a"}], "categories": [], "annotations": []}"#.into(),
                "images[1]: file_name \"a\" is listed twice",
            ),
            (Coco, r#"{"categories": [], "annotations": []}"#.into(), "field \"images\" is missing"),
            (Conll, "Ann O\nLee I-PER\n".into(), "line 2: tag I-PER follows O"),
            (Conll, "\n\nLee I-PER\n".into(), "line 3: tag I-PER follows the sentence start"),
            (Conll, "Ann B-PER\nLee I-LOC\n".into(), "line 2: tag I-LOC follows a PER span"),
            (Conll, "Ann E-PER\n".into(), "line 1: tag \"E-PER\" is not O, B-TYPE or I-TYPE"),
            (Conll, "Ann B-\n".into(), "is not O, B-TYPE"),
            (Conll, "Ann O\nLee\n".into(), "line 2: \"Lee\" has no tag"),
            (Conll, "\n\n".into(), "holds no annotations"),
            (Spans, r#"{"id": 1, "text": "abc", "spans": [{"start": 1, "end": 9, "label": "X"}]}"#.into(), "line 1, spans[0]: span 1..9 ends outside"),
            (Spans, r#"{"id": 1, "text": "abc", "spans": [{"start": 1, "end": 2}]}"#.into(), "spans[0]: field \"label\" is missing"),
            (Spans, r#"{"id": 1, "spans": []}"#.into(), "line 1: field \"text\" is missing"),
            (Spans, r#"{"id": 1.5, "text": "a", "spans": []}"#.into(), "field \"id\" must be a non-empty string or an integer"),
            (Spans, "\n[1]".into(), "line 2: expected an object, found an array"),
            (Spans, "{\"id\": 1,".into(), "line 1: not JSON"),
            (
                Spans,
                "{\"id\": 1, \"text\": \"a\", \"spans\": []}\n{\"id\": 1, \"text\": \"a\", \"spans\": []}".into(),
                "line 2: id \"1\" of annotator \"ann\" was already on line 1",
            ),
        ];
        for (format, input, expected) in cases {
            let error = read(format, &input).unwrap_err().to_string();
            assert!(error.starts_with("in.file: "), "{input}: {error}");
            assert!(error.contains(expected), "{format} {input}:\n{error}\nexpected {expected:?}");
        }
        for format in [Conll, Spans] {
            let error = import(format, "bad.bin", b"\n\xff\n", "a").unwrap_err().to_string();
            assert!(error.contains("line 2") && error.contains("invalid UTF-8"), "{error}");
        }
    }
}
