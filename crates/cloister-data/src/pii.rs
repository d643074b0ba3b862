//! Personal-data detection in text values: e-mail addresses, phone numbers (E.164, North
//! American and trunk-prefixed national formats), US social security numbers (with the SSA's
//! never-issued ranges excluded), IBANs (ISO 13616 mod-97 checksum), payment card numbers (Luhn
//! and a card-network prefix) and likely person names (a capitalised common first name followed
//! by a capitalised word, or alone in the value; the bundled list is `names.rs`).
//!
//! These are heuristics for a data owner's review, not a guarantee: they miss identifiers in
//! other formats or languages, numbers stored in numeric columns, and names not on the list,
//! and a match can be a false positive.

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::names::is_common_first_name;

/// A kind of personal data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    /// An e-mail address.
    Email,
    /// A phone number.
    Phone,
    /// A US social security number.
    UsSsn,
    /// An IBAN with a valid checksum.
    Iban,
    /// A payment card number with a valid Luhn digit.
    CreditCard,
    /// A likely person name.
    PersonName,
}

impl PiiKind {
    /// Every kind, in report order.
    pub const ALL: [Self; 6] =
        [Self::Email, Self::Phone, Self::UsSsn, Self::Iban, Self::CreditCard, Self::PersonName];

    /// The kind's name in reports.
    pub fn label(self) -> &'static str {
        match self {
            Self::Email => "e-mail",
            Self::Phone => "phone",
            Self::UsSsn => "US SSN",
            Self::Iban => "IBAN",
            Self::CreditCard => "card number",
            Self::PersonName => "person name",
        }
    }
}

/// The compiled patterns.
#[derive(Clone, Debug)]
pub struct Detector {
    email: Regex,
    e164: Regex,
    nanp: Regex,
    national: Regex,
    ssn: Regex,
    iban: Regex,
    card: Regex,
}

impl Detector {
    /// Compiles the patterns.
    pub fn new() -> Result<Self, regex::Error> {
        Ok(Self {
            email: Regex::new(r"(?i)\b[a-z0-9._%+\-]+@[a-z0-9\-]+(?:\.[a-z0-9\-]+)*\.[a-z]{2,}\b")?,
            e164: Regex::new(r"(?:^|[^\w+])\+[1-9](?:[ .\-]?\d){7,14}\b")?,
            nanp: Regex::new(r"(?:^|[^\w])\(?[2-9]\d{2}\)?[ .\-]\d{3}[ .\-]\d{4}\b")?,
            national: Regex::new(r"\b0\d{1,4}(?:[ \-]\d{2,4}){2,4}\b")?,
            ssn: Regex::new(r"\b(\d{3})-(\d{2})-(\d{4})\b")?,
            iban: Regex::new(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")?,
            card: Regex::new(r"\b\d(?:[ \-]?\d){12,18}\b")?,
        })
    }

    /// The kinds of personal data found in `text`, in [`PiiKind::ALL`] order.
    pub fn detect(&self, text: &str) -> Vec<PiiKind> {
        let mut found = Vec::new();
        if self.email.is_match(text) {
            found.push(PiiKind::Email);
        }
        if self.is_phone(text) {
            found.push(PiiKind::Phone);
        }
        if self.ssn.captures_iter(text).any(|c| {
            let part = |i| c.get(i).map_or("", |m| m.as_str());
            valid_ssn(part(1), part(2), part(3))
        }) {
            found.push(PiiKind::UsSsn);
        }
        if self.iban.find_iter(text).any(|m| valid_iban(m.as_str())) {
            found.push(PiiKind::Iban);
        }
        if self.card.find_iter(text).any(|m| valid_card(m.as_str())) {
            found.push(PiiKind::CreditCard);
        }
        if has_person_name(text) {
            found.push(PiiKind::PersonName);
        }
        found
    }

    /// The byte ranges of `text` that hold personal data of `kind`, with the same checks as
    /// [`Detector::detect`] (check digits, never-issued ranges), in order; overlapping matches
    /// of different patterns may both be listed. Person names are not located (they are found
    /// by a word list, not a pattern), so they yield nothing.
    pub fn find(&self, kind: PiiKind, text: &str) -> Vec<std::ops::Range<usize>> {
        // The phone patterns start with the character before the number (not part of it).
        let number_start = |m: regex::Match<'_>| {
            let skip =
                m.as_str().find(|c: char| c.is_ascii_digit() || c == '+' || c == '(').unwrap_or(0);
            m.start() + skip..m.end()
        };
        match kind {
            PiiKind::Email => self.email.find_iter(text).map(|m| m.range()).collect(),
            PiiKind::Phone => {
                let mut found: Vec<_> = self.e164.find_iter(text).map(number_start).collect();
                found.extend(self.nanp.find_iter(text).map(number_start));
                found.extend(self.national.find_iter(text).filter_map(|m| {
                    let digits = m.as_str().chars().filter(char::is_ascii_digit).count();
                    let glued = text
                        .get(..m.start())
                        .unwrap_or_default()
                        .trim_end_matches([' ', '-', '.'])
                        .ends_with(|c: char| c.is_ascii_digit());
                    ((10..=11).contains(&digits) && !glued).then(|| m.range())
                }));
                found.sort_by_key(|range| (range.start, range.end));
                found
            }
            PiiKind::UsSsn => self
                .ssn
                .captures_iter(text)
                .filter(|c| {
                    let part = |i| c.get(i).map_or("", |m| m.as_str());
                    valid_ssn(part(1), part(2), part(3))
                })
                .filter_map(|c| c.get(0).map(|m| m.range()))
                .collect(),
            PiiKind::Iban => self
                .iban
                .find_iter(text)
                .filter(|m| valid_iban(m.as_str()))
                .map(|m| m.range())
                .collect(),
            PiiKind::CreditCard => self
                .card
                .find_iter(text)
                .filter(|m| valid_card(m.as_str()))
                .map(|m| m.range())
                .collect(),
            PiiKind::PersonName => Vec::new(),
        }
    }

    fn is_phone(&self, text: &str) -> bool {
        self.e164.is_match(text)
            || self.nanp.is_match(text)
            || self.national.find_iter(text).any(|m| {
                let digits = m.as_str().chars().filter(char::is_ascii_digit).count();
                // Not the tail of a longer run of digit groups (a card or account number).
                let glued = text
                    .get(..m.start())
                    .unwrap_or_default()
                    .trim_end_matches([' ', '-', '.'])
                    .ends_with(|c: char| c.is_ascii_digit());
                (10..=11).contains(&digits) && !glued
            })
    }
}

/// An SSN outside the never-issued ranges: area 000, 666 or 900–999, group 00, serial 0000.
fn valid_ssn(area: &str, group: &str, serial: &str) -> bool {
    area != "000" && area != "666" && !area.starts_with('9') && group != "00" && serial != "0000"
}

/// ISO 13616: 15 to 34 characters, the first four moved to the end, letters as 10–35, the
/// number mod 97 is 1.
pub fn valid_iban(candidate: &str) -> bool {
    let compact: Vec<char> = candidate.chars().filter(|c| !c.is_whitespace()).collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let Some((head, tail)) = compact.split_at_checked(4) else { return false };
    let mut remainder: u32 = 0;
    for c in tail.iter().chain(head) {
        let Some(value) = c.to_digit(36) else { return false };
        // Letters are two digits (A = 10 … Z = 35).
        let scale = if value >= 10 { 100 } else { 10 };
        remainder = (remainder * scale + value) % 97;
    }
    remainder == 1
}

/// The Luhn check over `digits` (the check digit last).
pub fn luhn(digits: &[u32]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(index, digit)| {
            if index % 2 == 1 {
                let doubled = digit * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                *digit
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// A card number: 13 to 19 digits, a known network prefix (Visa 4, Mastercard 51–55 and
/// 2221–2720, American Express 34 and 37, Discover 6011, 644–649 and 65, JCB 35), and Luhn.
fn valid_card(candidate: &str) -> bool {
    let digits: Vec<u32> = candidate.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let prefix = |n: usize| digits.iter().take(n).fold(0, |acc, digit| acc * 10 + digit);
    let network = prefix(1) == 4
        || (51..=55).contains(&prefix(2))
        || (2221..=2720).contains(&prefix(4))
        || prefix(2) == 34
        || prefix(2) == 37
        || prefix(4) == 6011
        || (644..=649).contains(&prefix(3))
        || prefix(2) == 65
        || prefix(2) == 35;
    network && luhn(&digits)
}

fn is_capitalised(word: &str) -> bool {
    let mut chars = word.chars();
    chars.next().is_some_and(char::is_uppercase)
        && chars.clone().next().is_some()
        && chars.all(char::is_lowercase)
}

/// A common first name, capitalised, followed by a capitalised word (`Maria Lopez`) or alone
/// in the value.
fn has_person_name(text: &str) -> bool {
    let words: Vec<&str> = text.split(|c: char| !c.is_alphabetic() && c != '\'').collect();
    if let [only] = words.iter().filter(|word| !word.is_empty()).collect::<Vec<_>>().as_slice() {
        return is_capitalised(only) && is_common_first_name(only) && text.trim() == **only;
    }
    let tokens: Vec<&str> = text.split_whitespace().collect();
    tokens.windows(2).any(|pair| match pair {
        [first, last] => {
            let last = last.trim_end_matches(|c: char| !c.is_alphabetic());
            is_capitalised(first) && is_common_first_name(first) && is_capitalised(last)
        }
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<PiiKind> {
        Detector::new().unwrap().detect(text)
    }

    #[test]
    fn true_positives() {
        assert_eq!(kinds("write to jane.doe+x@example.co.uk"), [PiiKind::Email]);
        assert_eq!(kinds("+44 20 7946 0958"), [PiiKind::Phone]);
        assert_eq!(kinds("+14155550123"), [PiiKind::Phone]);
        assert_eq!(kinds("call (415) 555-0123"), [PiiKind::Phone]);
        assert_eq!(kinds("01 23 45 67 89"), [PiiKind::Phone]);
        assert_eq!(kinds("SSN 123-45-6789"), [PiiKind::UsSsn]);
        assert_eq!(kinds("GB82 WEST 1234 5698 7654 32"), [PiiKind::Iban]);
        assert_eq!(kinds("DE89370400440532013000"), [PiiKind::Iban]);
        assert_eq!(kinds("4111 1111 1111 1111"), [PiiKind::CreditCard]);
        assert_eq!(kinds("5500-0000-0000-0004"), [PiiKind::CreditCard]);
        assert_eq!(kinds("seen by Maria Lopez today"), [PiiKind::PersonName]);
        assert_eq!(kinds("James"), [PiiKind::PersonName]);
    }

    #[test]
    fn near_misses_are_not_flagged() {
        for text in [
            "jane.doe@localhost",
            "12345",
            "+1 23",
            "01-02-2020",
            "000-12-3456",
            "666-12-3456",
            "123-00-6789",
            "GB82 WEST 1234 5698 7654 33",
            "4111 1111 1111 1112",
            "1234 5678 9012 3456",
            "the patient improved",
            "james",
            "Maria is fine",
            "1.5e10",
        ] {
            assert_eq!(kinds(text), [], "{text:?}");
        }
    }

    #[test]
    fn the_checksums_are_the_published_ones() {
        assert!(valid_iban("FR1420041010050500013M02606"));
        assert!(!valid_iban("FR1420041010050500013M02607"));
        assert!(luhn(&[7, 9, 9, 2, 7, 3, 9, 8, 7, 1, 3]));
        assert!(!luhn(&[7, 9, 9, 2, 7, 3, 9, 8, 7, 1, 4]));
    }
}
