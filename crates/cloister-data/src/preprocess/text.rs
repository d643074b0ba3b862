//! Text steps on one value: cleaning (NFC, control and invisible characters, whitespace,
//! lowercase), redaction (built-in personal-data patterns, regular expressions, whole values)
//! and keyed pseudonyms (HMAC-SHA-256), and the canonical encoding of a row that `dedupe` and
//! `split` hash.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::Range;

use hmac::{Hmac, KeyInit, Mac as _};
use regex::Regex;
use sha2::{Digest as _, Sha256};
use unicode_normalization::UnicodeNormalization as _;

use super::pipeline::PiiPattern;
use crate::pii::{Detector, PiiKind};
use crate::schema::Value;

/// How `text_clean` cleans.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cleaning {
    pub(crate) lowercase: bool,
    pub(crate) whitespace: bool,
    pub(crate) control: bool,
    pub(crate) nfc: bool,
}

/// Characters that change how text is displayed without being seen: zero-width characters,
/// bidirectional embeddings, overrides and isolates, the byte-order mark.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// Cleans `text`: NFC first, then control characters (but tab, line feed and carriage return,
/// which are whitespace) and invisible ones removed, then whitespace trimmed and collapsed to
/// single spaces, then lowercase.
pub(crate) fn clean(text: &str, how: Cleaning) -> String {
    let mut text: String = if how.nfc { text.nfc().collect() } else { text.to_owned() };
    if how.control {
        text.retain(|c| (!c.is_control() || matches!(c, '\t' | '\n' | '\r')) && !is_invisible(c));
    }
    if how.whitespace {
        text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    }
    if how.lowercase {
        text = text.to_lowercase();
    }
    text
}

/// What `redact` replaces.
#[derive(Debug)]
pub(crate) struct Redactor {
    detector: Option<Detector>,
    kinds: Vec<PiiKind>,
    regexes: Vec<Regex>,
    values: BTreeSet<String>,
    placeholder: String,
}

impl Redactor {
    pub(crate) fn new(
        pii: &[PiiPattern],
        regexes: &[String],
        values: &[String],
        placeholder: &str,
    ) -> Result<Self, String> {
        let kinds: Vec<PiiKind> = pii
            .iter()
            .map(|p| match p {
                PiiPattern::Email => PiiKind::Email,
                PiiPattern::Phone => PiiKind::Phone,
                PiiPattern::UsSsn => PiiKind::UsSsn,
                PiiPattern::Iban => PiiKind::Iban,
                PiiPattern::CreditCard => PiiKind::CreditCard,
            })
            .collect();
        let detector = if kinds.is_empty() {
            None
        } else {
            Some(Detector::new().map_err(|e| format!("the built-in patterns: {e}"))?)
        };
        let regexes = regexes
            .iter()
            .map(|pattern| {
                regex::RegexBuilder::new(pattern)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| format!("regex {pattern:?}: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Redactor {
            detector,
            kinds,
            regexes,
            values: values.iter().cloned().collect(),
            placeholder: placeholder.to_owned(),
        })
    }

    /// `text` with whole-value matches, then pattern and regular-expression matches (merged
    /// where they overlap) replaced by the placeholder; `None` when nothing matched.
    pub(crate) fn redact(&self, text: &str) -> Option<String> {
        if self.values.contains(text) {
            return Some(self.placeholder.clone());
        }
        let mut ranges: Vec<Range<usize>> = Vec::new();
        if let Some(detector) = &self.detector {
            for kind in &self.kinds {
                ranges.extend(detector.find(*kind, text));
            }
        }
        for regex in &self.regexes {
            ranges.extend(regex.find_iter(text).map(|m| m.range()).filter(|r| !r.is_empty()));
        }
        if ranges.is_empty() {
            return None;
        }
        ranges.sort_by_key(|r| (r.start, r.end));
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for range in ranges {
            if range.end <= at {
                continue;
            }
            let start = range.start.max(at);
            out.push_str(text.get(at..start).unwrap_or_default());
            if range.start >= at {
                out.push_str(&self.placeholder);
            }
            at = range.end;
        }
        out.push_str(text.get(at..).unwrap_or_default());
        Some(out)
    }
}

/// The key of `pseudonymize`, read from a file the user names. Never written anywhere; its
/// `Debug` shows only its length.
#[derive(Clone)]
pub struct PseudonymKey(Vec<u8>);

/// The shortest key taken, in bytes.
pub const MIN_KEY_BYTES: usize = 16;

impl PseudonymKey {
    /// A key of at least [`MIN_KEY_BYTES`] bytes (the file's bytes exactly, newline included).
    pub fn new(bytes: Vec<u8>) -> Result<Self, String> {
        if bytes.len() < MIN_KEY_BYTES {
            return Err(format!(
                "the pseudonymisation key has {} bytes; at least {MIN_KEY_BYTES} are needed \
                 (32 random bytes are best)",
                bytes.len()
            ));
        }
        Ok(Self(bytes))
    }
}

impl fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PseudonymKey({} bytes)", self.0.len())
    }
}

/// Domain separation of the pseudonym MAC: a token is never an HMAC of the bare value.
const PSEUDONYM_DOMAIN: &[u8] = b"cloister-pseudonym-v1\0";

/// Makes keyed tokens.
#[derive(Clone)]
pub(crate) struct Pseudonymizer {
    mac: Hmac<Sha256>,
    prefix: String,
    length: usize,
}

impl fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pseudonymizer({:?}, {})", self.prefix, self.length)
    }
}

impl Pseudonymizer {
    pub(crate) fn new(key: &PseudonymKey, prefix: &str, length: usize) -> Result<Self, String> {
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key.0)
            .map_err(|e| format!("the pseudonymisation key: {e}"))?;
        Ok(Self { mac, prefix: prefix.to_owned(), length: length.clamp(8, 64) })
    }

    /// The token of a value: the same value (as text: `42` and `"42"` alike) always gives the
    /// same token under one key.
    pub(crate) fn token(&self, value: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(PSEUDONYM_DOMAIN);
        mac.update(value.as_bytes());
        let digest = hex::encode(mac.finalize().into_bytes());
        format!("{}{}", self.prefix, digest.get(..self.length).unwrap_or(&digest))
    }
}

/// A value as text (`pseudonymize` and category names): ints and floats in decimal, booleans as
/// `true`/`false`.
pub(crate) fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::Str(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Float(x) => Some(x.to_string()),
        Value::Bool(b) => Some(b.to_string()),
    }
}

/// SHA-256 over `domain` and an unambiguous encoding of `values` (a type tag per value, string
/// lengths before their bytes).
pub(crate) fn row_digest<'v>(domain: &[u8], values: impl Iterator<Item = &'v Value>) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(domain);
    for value in values {
        match value {
            Value::Null => hash.update([0]),
            Value::Int(i) => {
                hash.update([1]);
                hash.update(i.to_le_bytes());
            }
            Value::Float(x) => {
                hash.update([2]);
                // -0.0 as 0.0 and one NaN, so that equal-looking values are equal.
                let x = if x.is_nan() { f64::NAN } else { x + 0.0 };
                hash.update(x.to_bits().to_le_bytes());
            }
            Value::Str(s) => {
                hash.update([3]);
                hash.update((s.len() as u64).to_le_bytes());
                hash.update(s.as_bytes());
            }
            Value::Bool(b) => hash.update([4, u8::from(*b)]),
        }
    }
    hash.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleaning_normalises_strips_and_collapses() {
        let all = Cleaning { lowercase: true, whitespace: true, control: true, nfc: true };
        // "e" + combining acute becomes one "é"; a NUL, a bell and a right-to-left override go.
        let text = "  Cafe\u{301}\u{0}\u{7} \t\n  BAR\u{202E}x  ";
        assert_eq!(clean(text, all), "caf\u{e9} barx");
        let only_space =
            Cleaning { lowercase: false, whitespace: true, control: false, nfc: false };
        assert_eq!(clean(" A  B ", only_space), "A B");
        assert_eq!(clean("Cafe\u{301}", Cleaning { nfc: false, ..all }), "cafe\u{301}");
    }

    #[test]
    fn redaction_replaces_patterns_regexes_and_values() {
        let redactor = Redactor::new(
            &[PiiPattern::Email, PiiPattern::Phone],
            &["MRN-\\d+".into()],
            &["secret".into()],
            "[X]",
        )
        .unwrap();
        assert_eq!(
            redactor.redact("mail ann@example.org or call (415) 555-0123, MRN-42").as_deref(),
            Some("mail [X] or call [X], [X]")
        );
        assert_eq!(redactor.redact("+44 20 7946 0958").as_deref(), Some("[X]"));
        assert_eq!(redactor.redact("secret").as_deref(), Some("[X]"));
        assert_eq!(redactor.redact("a secret"), None);
        assert_eq!(redactor.redact("nothing here 12"), None);
        assert!(Redactor::new(&[], &["(".into()], &[], "x").is_err());
    }

    #[test]
    fn pseudonyms_are_keyed_stable_and_do_not_show_the_value() {
        let key = PseudonymKey::new(b"0123456789abcdef0123456789abcdef".to_vec()).unwrap();
        let other = PseudonymKey::new(b"fedcba9876543210fedcba9876543210".to_vec()).unwrap();
        let p = Pseudonymizer::new(&key, "pid_", 16).unwrap();
        let token = p.token("patient-17");
        assert_eq!(token, p.token("patient-17"));
        assert_eq!(token.len(), 4 + 16);
        assert!(token.starts_with("pid_") && !token.contains("17"));
        assert_ne!(token, p.token("patient-18"));
        assert_ne!(token, Pseudonymizer::new(&other, "pid_", 16).unwrap().token("patient-17"));
        // Independently: HMAC-SHA-256 over the domain and the value.
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(b"0123456789abcdef0123456789abcdef").unwrap();
        mac.update(b"cloister-pseudonym-v1\0patient-17");
        assert_eq!(token[4..], hex::encode(mac.finalize().into_bytes())[..16]);
        assert!(PseudonymKey::new(b"short".to_vec()).is_err());
        assert_eq!(format!("{key:?}"), "PseudonymKey(32 bytes)");
    }

    #[test]
    fn row_digests_tell_types_and_boundaries_apart() {
        let d = |values: &[Value]| row_digest(b"t", values.iter());
        assert_ne!(d(&[Value::Int(1)]), d(&[Value::Str("1".into())]));
        assert_ne!(
            d(&[Value::Str("ab".into()), Value::Str("c".into())]),
            d(&[Value::Str("a".into()), Value::Str("bc".into())])
        );
        assert_eq!(d(&[Value::Float(0.0)]), d(&[Value::Float(-0.0)]));
        assert_ne!(d(&[Value::Null]), d(&[Value::Str(String::new())]));
    }
}
