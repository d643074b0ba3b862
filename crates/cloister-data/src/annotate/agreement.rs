//! Chance-corrected agreement between annotators: Cohen's kappa for two, Fleiss' kappa for
//! three or more, over units every annotator rated with one category each.
//!
//! Cohen (1960): κ = (p_o − p_e) / (1 − p_e), p_o the share of units both annotators put in the
//! same category, p_e = Σ_k p_1k · p_2k from each annotator's own category shares.
//!
//! Fleiss (1971): with N units, n raters each and n_ij the raters who put unit i in category j,
//! P_i = (Σ_j n_ij² − n) / (n (n − 1)), P̄ their mean, p_j = Σ_i n_ij / (N n),
//! P̄_e = Σ_j p_j², κ = (P̄ − P̄_e) / (1 − P̄_e).
//!
//! κ is undefined (`None`) when p_e = 1: every rating is the same one category.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Which kappa.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Statistic {
    /// Cohen's kappa: two annotators.
    Cohen,
    /// Fleiss' kappa: three or more.
    Fleiss,
}

/// A kappa and its parts.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Kappa {
    /// Cohen's or Fleiss'.
    pub statistic: Statistic,
    /// Observed agreement (p_o, or Fleiss' P̄).
    pub observed: f64,
    /// Agreement expected by chance (p_e, or P̄_e).
    pub expected: f64,
    /// κ; `None` where chance agreement is 1 (one category only).
    pub kappa: Option<f64>,
}

/// The kappa of `ratings`: one row per unit, one category per rater, the raters in the same
/// order in every row. `None` without units, with fewer than two raters, or with rows of
/// different lengths.
pub fn kappa<C: Ord>(ratings: &[Vec<C>]) -> Option<Kappa> {
    let raters = ratings.first()?.len();
    if raters < 2 || ratings.iter().any(|row| row.len() != raters) {
        return None;
    }
    if raters == 2 { Some(cohen(ratings)) } else { Some(fleiss(ratings, raters)) }
}

fn ratio(numerator: f64, denominator: f64) -> f64 {
    numerator / denominator
}

fn cohen<C: Ord>(ratings: &[Vec<C>]) -> Kappa {
    let units = ratings.len() as u128;
    let mut first: BTreeMap<&C, u128> = BTreeMap::new();
    let mut second: BTreeMap<&C, u128> = BTreeMap::new();
    let mut agreed = 0u128;
    for row in ratings {
        if let [a, b] = &row[..] {
            *first.entry(a).or_default() += 1;
            *second.entry(b).or_default() += 1;
            agreed += u128::from(a == b);
        }
    }
    let chance: u128 =
        first.iter().map(|(category, a)| a * second.get(category).copied().unwrap_or(0)).sum();
    let total = units * units;
    let observed = ratio(agreed as f64, units as f64);
    let expected = ratio(chance as f64, total as f64);
    let kappa = (chance < total).then(|| (observed - expected) / (1.0 - expected));
    Kappa { statistic: Statistic::Cohen, observed, expected, kappa }
}

fn fleiss<C: Ord>(ratings: &[Vec<C>], raters: usize) -> Kappa {
    let n = raters as u128;
    let units = ratings.len() as u128;
    let mut totals: BTreeMap<&C, u128> = BTreeMap::new();
    let mut agreement_sum = 0.0;
    for row in ratings {
        let mut counts: BTreeMap<&C, u128> = BTreeMap::new();
        for category in row {
            *counts.entry(category).or_default() += 1;
        }
        let squares: u128 = counts.values().map(|c| c * c).sum();
        agreement_sum += ratio((squares - n) as f64, (n * (n - 1)) as f64);
        for (category, count) in counts {
            *totals.entry(category).or_default() += count;
        }
    }
    let all = units * n;
    let chance: u128 = totals.values().map(|c| c * c).sum();
    let observed = agreement_sum / units as f64;
    let expected = ratio(chance as f64, (all * all) as f64);
    let kappa = (chance < all * all).then(|| (observed - expected) / (1.0 - expected));
    Kappa { statistic: Statistic::Fleiss, observed, expected, kappa }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Expands a contingency table of two raters (rows: rater A's category, columns: rater B's)
    /// into per-unit ratings.
    fn from_table(table: &[[usize; 2]; 2]) -> Vec<Vec<u8>> {
        let mut ratings = Vec::new();
        for (a, row) in table.iter().enumerate() {
            for (b, &count) in row.iter().enumerate() {
                ratings.extend(std::iter::repeat_n(vec![a as u8, b as u8], count));
            }
        }
        ratings
    }

    #[test]
    fn cohen_matches_the_published_worked_examples() {
        // Wikipedia, "Cohen's kappa", worked example: 50 grant proposals read by A and B;
        // both yes 20, A yes/B no 5, A no/B yes 10, both no 15: p_o = 0.7, p_e = 0.5, κ = 0.4.
        let k = kappa(&from_table(&[[20, 5], [10, 15]])).unwrap();
        assert_eq!(k.statistic, Statistic::Cohen);
        assert!((k.observed - 0.7).abs() < 1e-12 && (k.expected - 0.5).abs() < 1e-12);
        assert!((k.kappa.unwrap() - 0.4).abs() < 1e-12, "{k:?}");
        // The same article's "same percentages, different kappa" tables: 45/15/25/15 gives
        // κ = 0.1304 and 25/35/5/35 gives κ = 0.2593 (both with p_o = 0.60).
        let k = kappa(&from_table(&[[45, 15], [25, 15]])).unwrap().kappa.unwrap();
        assert!((k - 0.1304).abs() < 5e-5, "{k}");
        let k = kappa(&from_table(&[[25, 35], [5, 35]])).unwrap().kappa.unwrap();
        assert!((k - 0.2593).abs() < 5e-5, "{k}");
    }

    #[test]
    fn fleiss_matches_the_published_worked_example() {
        // Wikipedia, "Fleiss' kappa", worked example (after Fleiss 1971): 10 subjects, 14
        // raters, 5 categories; P̄ = 0.378, P̄_e = 0.213, κ = 0.210.
        let table: [[usize; 5]; 10] = [
            [0, 0, 0, 0, 14],
            [0, 2, 6, 4, 2],
            [0, 0, 3, 5, 6],
            [0, 3, 9, 2, 0],
            [2, 2, 8, 1, 1],
            [7, 7, 0, 0, 0],
            [3, 2, 6, 3, 0],
            [2, 5, 3, 2, 2],
            [6, 5, 2, 1, 0],
            [0, 2, 2, 3, 7],
        ];
        let ratings: Vec<Vec<usize>> = table
            .iter()
            .map(|row| {
                row.iter().enumerate().flat_map(|(j, &n)| std::iter::repeat_n(j, n)).collect()
            })
            .collect();
        let k = kappa(&ratings).unwrap();
        assert_eq!(k.statistic, Statistic::Fleiss);
        assert!((k.observed - 0.378).abs() < 5e-4, "{k:?}");
        assert!((k.expected - 0.213).abs() < 5e-4, "{k:?}");
        assert!((k.kappa.unwrap() - 0.210).abs() < 5e-4, "{k:?}");
    }

    #[test]
    fn perfect_agreement_is_one_and_a_single_category_is_undefined() {
        let two = vec![vec!["a", "a"], vec!["b", "b"], vec!["a", "a"]];
        assert_eq!(kappa(&two).unwrap().kappa, Some(1.0));
        let three = vec![vec!["a", "a", "a"], vec!["c", "c", "c"]];
        assert_eq!(kappa(&three).unwrap().kappa, Some(1.0));
        let single = vec![vec!["a", "a"], vec!["a", "a"]];
        assert_eq!(kappa(&single).unwrap().kappa, None);
        let single = vec![vec!["a", "a", "a"]];
        assert_eq!(kappa(&single).unwrap().kappa, None);
    }

    #[test]
    fn no_units_one_rater_or_ragged_rows_have_no_kappa() {
        assert!(kappa::<u8>(&[]).is_none());
        assert!(kappa(&[vec![1], vec![2]]).is_none());
        assert!(kappa(&[vec![1, 2], vec![2]]).is_none());
    }

    #[test]
    fn systematic_disagreement_is_negative() {
        let ratings = vec![vec!["a", "b"], vec!["b", "a"], vec!["a", "b"], vec!["b", "a"]];
        assert!(kappa(&ratings).unwrap().kappa.unwrap() < 0.0);
    }

    fn ratings(raters: usize) -> impl Strategy<Value = Vec<Vec<u8>>> {
        prop::collection::vec(prop::collection::vec(0u8..4, raters), 1..40)
    }

    proptest! {
        #[test]
        fn kappa_is_at_most_one(rows in (2usize..6).prop_flat_map(ratings)) {
            if let Some(k) = kappa(&rows).unwrap().kappa {
                prop_assert!(k <= 1.0 + 1e-12, "{k}");
            }
        }

        #[test]
        fn cohen_is_symmetric_in_the_annotators(rows in ratings(2)) {
            let swapped: Vec<Vec<u8>> = rows.iter().map(|r| vec![r[1], r[0]]).collect();
            prop_assert_eq!(kappa(&rows).unwrap().kappa, kappa(&swapped).unwrap().kappa);
        }

        #[test]
        fn fleiss_does_not_depend_on_the_raters_order(rows in ratings(4)) {
            let reversed: Vec<Vec<u8>> =
                rows.iter().map(|r| r.iter().rev().copied().collect()).collect();
            let (a, b) = (kappa(&rows).unwrap().kappa, kappa(&reversed).unwrap().kappa);
            let same = match (a, b) {
                (Some(a), Some(b)) => (a - b).abs() < 1e-12,
                (a, b) => a == b,
            };
            prop_assert!(same, "{a:?} {b:?}");
        }
    }
}
