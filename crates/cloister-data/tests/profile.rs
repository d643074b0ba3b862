//! Profiles of generated data sets: statistics against hand-computed values, personal data
//! found in generated rows (and near misses not flagged), identifiers, estimated distinct
//! counts past the cap, digests checked before reading, and the HTML report's escaping.

// Helpers in integration tests are not #[test] functions; a failed setup should panic loudly.
#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use cloister_data::pii::PiiKind;
use cloister_data::profile::ColumnProfile;
use cloister_data::report::{render_html, render_table};
use cloister_data::{DataError, IngestOptions, Profile, Rejects, Silent, ingest, profile};

fn ingest_csv(dir: &Path, csv: &str) -> PathBuf {
    let input = dir.join("in.csv");
    fs::write(&input, csv).unwrap();
    let out = dir.join("set");
    ingest(&[input], &out, &IngestOptions::default(), Rejects::refuse(), &Silent).unwrap();
    out
}

fn column<'a>(profile: &'a Profile, name: &str) -> &'a ColumnProfile {
    profile.columns.iter().find(|c| c.name == name).unwrap()
}

fn kinds(column: &ColumnProfile) -> Vec<PiiKind> {
    column.pii.iter().map(|finding| finding.kind).collect()
}

const FIRST: [&str; 5] = ["Maria", "James", "Wei", "Fatima", "Lukas"];
const LAST: [&str; 5] = ["Lopez", "Smith", "Zhang", "Haddad", "Becker"];
/// Valid card numbers (Luhn and network prefix): test numbers the networks publish.
const CARDS: [&str; 4] =
    ["4111 1111 1111 1111", "5500 0000 0000 0004", "3400 0000 0000 009", "6011 0000 0000 0004"];

#[test]
fn personal_data_and_identifiers_are_found_in_generated_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("patient_id,email,phone,ssn,iban,card,bad_card,note,ward\n");
    for i in 0..40 {
        let first = FIRST[i % 5];
        let last = LAST[(i / 5) % 5];
        let card = CARDS[i % 4];
        // The same digits with the last one changed: the Luhn check fails.
        let last_digit = card.chars().last().unwrap().to_digit(10).unwrap();
        let bad_card = format!("{}{}", &card[..card.len() - 1], (last_digit + 1) % 10);
        writeln!(
            csv,
            "P{i:04},{f}.{l}{i}@example.org,+44 20 7946 {i:04},{area:03}-{group:02}-{serial:04},GB82 WEST 1234 5698 7654 32,\
             {card},{bad_card},\"Seen by {first} {last} on ward {w}\",ward {w}",
            f = first.to_lowercase(),
            l = last.to_lowercase(),
            area = 100 + i,
            group = 10 + i,
            serial = 1000 + i,
            w = i % 3,
        )
        .unwrap();
    }
    let out = ingest_csv(dir.path(), &csv);
    let profile = profile(&out).unwrap();
    assert_eq!(profile.rows, 40);
    assert_eq!(kinds(column(&profile, "email")), [PiiKind::Email]);
    assert_eq!(kinds(column(&profile, "phone")), [PiiKind::Phone]);
    assert_eq!(kinds(column(&profile, "ssn")), [PiiKind::UsSsn]);
    assert_eq!(kinds(column(&profile, "iban")), [PiiKind::Iban]);
    assert_eq!(kinds(column(&profile, "card")), [PiiKind::CreditCard]);
    assert_eq!(column(&profile, "card").pii[0].values, 40);
    // Luhn-invalid numbers are not card numbers.
    assert_eq!(kinds(column(&profile, "bad_card")), []);
    assert_eq!(kinds(column(&profile, "note")), [PiiKind::PersonName]);
    assert_eq!(column(&profile, "note").pii[0].values, 40);
    assert_eq!(kinds(column(&profile, "ward")), []);
    assert!(column(&profile, "patient_id").identifier);
    assert!(column(&profile, "email").identifier);
    assert!(!column(&profile, "ward").identifier);
    assert_eq!(column(&profile, "ward").distinct, 3);
    let table = render_table(&profile);
    assert!(table.contains("identifier"), "{table}");
    assert!(table.contains("card number (40)"), "{table}");
}

#[test]
fn statistics_histograms_and_top_values() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("x,colour,flag\n");
    for i in 1..=10 {
        let colour = ["red", "green", "red", "blue", "red"][i % 5];
        let flag = if i % 3 == 0 { "" } else { "true" };
        writeln!(csv, "{i},{colour},{flag}").unwrap();
    }
    let out = ingest_csv(dir.path(), &csv);
    let profile = profile(&out).unwrap();
    let x = column(&profile, "x");
    let numbers = x.numbers.as_ref().unwrap();
    assert_eq!((numbers.min, numbers.max, numbers.mean), (1.0, 10.0, 5.5));
    // Population standard deviation of 1..=10: sqrt(8.25).
    assert!((numbers.stddev - 8.25_f64.sqrt()).abs() < 1e-12);
    assert_eq!(numbers.histogram.len(), 10);
    assert!(numbers.histogram.iter().all(|bucket| bucket.count == 1));
    assert_eq!(numbers.histogram.iter().map(|b| b.count).sum::<u64>(), 10);
    let colour = column(&profile, "colour");
    assert_eq!((colour.top[0].value.as_str(), colour.top[0].count), ("red", 6));
    assert!(colour.top_exact && colour.distinct_exact);
    assert_eq!(colour.distinct, 3);
    let flag = column(&profile, "flag");
    assert_eq!((flag.missing, flag.count), (3, 7));
}

#[test]
fn distinct_counts_past_the_cap_are_labelled_estimates() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("n\n");
    for i in 0..150_000 {
        writeln!(csv, "{i}").unwrap();
    }
    let out = ingest_csv(dir.path(), &csv);
    let profile = profile(&out).unwrap();
    let n = column(&profile, "n");
    assert!(!n.distinct_exact);
    assert!((n.distinct as f64 - 150_000.0).abs() < 4500.0, "{}", n.distinct);
    // Without an exact count, uniqueness is not claimed.
    assert!(!n.identifier);
    assert!(render_table(&profile).contains('≈'));
}

#[test]
fn a_changed_shard_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = ingest_csv(dir.path(), "a\n1\n2\n");
    let shard = out.join("shard-00000.parquet");
    let mut bytes = fs::read(&shard).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    fs::write(&shard, bytes).unwrap();
    let error = profile(&out).unwrap_err();
    assert!(matches!(error, DataError::Dataset(_)), "{error}");
    assert!(error.to_string().contains("shard-00000.parquet"), "{error}");
}

#[test]
fn the_html_report_shows_data_as_text() {
    let dir = tempfile::tempdir().unwrap();
    let out = ingest_csv(
        dir.path(),
        "<b>name</b>,n\n<script>alert(1)</script>,1\n\"a\"\"b'c&d\",2\n<script>alert(1)</script>,3\n",
    );
    let profile = profile(&out).unwrap();
    let html = render_html(&profile, "<title>set");
    assert!(html.contains("&lt;script&gt;alert(1)"), "{html}");
    assert!(!html.contains("<script"), "{html}");
    assert!(html.contains("&lt;b&gt;name&lt;/b&gt;"));
    assert!(!html.contains("<b>"));
    assert!(html.contains("a&quot;b&#39;c&amp;d"));
    assert!(html.contains("&lt;title&gt;set"));
    // Self-contained: inline SVG charts, nothing fetched.
    assert!(html.contains("<svg"));
    assert!(!html.contains("src="));
    // The only address is the SVG namespace, which is a name, not a fetch.
    assert_eq!(html.matches("://").count(), html.matches("http://www.w3.org/2000/svg").count());
}
