//! Vendor collateral as the service names it, and as an attestation result records it.
//!
//! A [`CollateralKey`] names one item of the attestation service's collateral cache (vendor,
//! kind, id). A [`CollateralRecord`] is what an EAR appraisal carries about the collateral it was
//! made with: which items it depended on and the SHA-256 of each. The key broker computes the
//! record again over the cache at release time; any difference (an item changed, appeared or
//! disappeared) means the platform was appraised against collateral that is no longer the
//! service's, and the enclave must attest again.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::claims::TeeKind;
use crate::encoding::Hex;

/// Which vendor service a piece of collateral comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Vendor {
    /// Intel PCS / PCCS (SGX and TDX).
    Intel,
    /// AMD Key Distribution Service (SEV-SNP).
    Amd,
    /// Hygon Key Distribution Service (CSV).
    Hygon,
    /// NVIDIA RIM service and device certificates.
    Nvidia,
    /// Google's Android key attestation revocation status list.
    Google,
}

impl Vendor {
    /// Every vendor.
    pub const ALL: [Vendor; 5] =
        [Vendor::Intel, Vendor::Amd, Vendor::Hygon, Vendor::Nvidia, Vendor::Google];

    /// The TEEs whose drivers read this vendor's collateral.
    pub fn tees(self) -> &'static [TeeKind] {
        match self {
            Vendor::Intel => &[TeeKind::Sgx, TeeKind::Tdx],
            Vendor::Amd => &[TeeKind::Snp],
            Vendor::Hygon => &[TeeKind::Csv],
            Vendor::Nvidia => &[TeeKind::Nvidia],
            Vendor::Google => &[TeeKind::Android],
        }
    }

    /// The vendor whose collateral the driver of `tee` reads; `None` for TEEs that read no
    /// cached collateral (`sim`, CCA, Nitro).
    pub fn serving(tee: TeeKind) -> Option<Vendor> {
        Vendor::ALL.into_iter().find(|vendor| vendor.tees().contains(&tee))
    }

    /// Whether items of `kind` each serve one platform, the one their id names (Intel TCB info
    /// per FMSPC, an AMD VCEK per chip and TCB, Hygon HSK/CEK per chip): such an item of another
    /// platform never enters the appraisal of this one.
    pub fn is_per_platform(self, kind: &str) -> bool {
        matches!(
            (self, kind),
            (Vendor::Intel, "tcb-info") | (Vendor::Amd, "vcek") | (Vendor::Hygon, "hsk-cek")
        )
    }
}

/// One piece of vendor collateral: vendor, kind and what it is for.
///
/// Kinds and ids: Intel `tcb-info` `<sgx|tdx>/<fmspc hex>`, `qe-identity` `<sgx|tdx>`,
/// `pck-crl` `<processor|platform>`, `root-ca-crl` `root`, `bundle` (an offline dcap-qvl
/// bundle); AMD `vcek` `<Product>/<hwid hex>?<TCB query>`, `ask-ark` and `asvk-ark`
/// `<Product>`; Hygon `hsk-cek` `<chip serial>`; Google `status` `attestation` (the Android key
/// attestation revocation list); anything else an offline bundle names.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CollateralKey {
    /// The vendor service.
    pub vendor: Vendor,
    /// The kind of item.
    pub kind: String,
    /// What it is for.
    pub id: String,
}

impl CollateralKey {
    /// A key.
    pub fn new(vendor: Vendor, kind: &str, id: impl Into<String>) -> Self {
        Self { vendor, kind: kind.to_owned(), id: id.into() }
    }
}

impl fmt::Display for CollateralKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}/{}/{}", self.vendor, self.kind, self.id)
    }
}

/// One cache item an appraisal depended on, and its digest then.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollateralItemDigest {
    /// The item's key in the service's cache.
    pub key: CollateralKey,
    /// SHA-256 of the item's bytes, or `None` when nothing was cached under the key (the
    /// evidence needed it and the appraisal went without it): then nothing may be cached under
    /// it at release either.
    pub sha256: Option<Hex>,
}

/// The collateral one component's appraisal was made with (EAR submod `cloister.collateral`).
///
/// The items are every cached item of the vendor serving the component's TEE, except the
/// per-platform items ([`Vendor::is_per_platform`]) of other platforms, plus every key in
/// `needs` (present or not). Evidence of a TEE that reads no cached collateral records nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollateralRecord {
    /// What the evidence needs from its vendor (as the verifier says), sorted, without repeats.
    pub needs: Vec<CollateralKey>,
    /// The items the appraisal depended on, sorted by key.
    pub items: Vec<CollateralItemDigest>,
}

impl CollateralRecord {
    /// The record of an appraisal of `tee` evidence that needs `needs`, over `cached`: every
    /// item of the service's collateral cache, key and bytes.
    pub fn of<'a>(
        tee: TeeKind,
        needs: &[CollateralKey],
        cached: impl IntoIterator<Item = (&'a CollateralKey, &'a [u8])>,
    ) -> Self {
        let Some(vendor) = Vendor::serving(tee) else { return Self::default() };
        let needs: Vec<CollateralKey> = {
            let mut needs = needs.to_vec();
            needs.sort();
            needs.dedup();
            needs
        };
        let mut items: BTreeMap<CollateralKey, Option<Hex>> =
            needs.iter().map(|key| (key.clone(), None)).collect();
        for (key, bytes) in cached {
            let counts = key.vendor == vendor
                && (!vendor.is_per_platform(&key.kind) || needs.binary_search(key).is_ok());
            if counts {
                items.insert(key.clone(), Some(Hex(Sha256::digest(bytes).to_vec())));
            }
        }
        let items =
            items.into_iter().map(|(key, sha256)| CollateralItemDigest { key, sha256 }).collect();
        Self { needs, items }
    }

    /// How `current` differs from `self`, one line per item (`… changed`, `… is no longer
    /// cached`, `… is now cached`), in key order; empty when they agree.
    pub fn changes(&self, current: &CollateralRecord) -> Vec<String> {
        let before: BTreeMap<&CollateralKey, &Option<Hex>> =
            self.items.iter().map(|item| (&item.key, &item.sha256)).collect();
        let after: BTreeMap<&CollateralKey, &Option<Hex>> =
            current.items.iter().map(|item| (&item.key, &item.sha256)).collect();
        let mut keys: Vec<&CollateralKey> = before.keys().chain(after.keys()).copied().collect();
        keys.sort();
        keys.dedup();
        let mut out = Vec::new();
        for key in keys {
            let then = before.get(key).copied().cloned().flatten();
            let now = after.get(key).copied().cloned().flatten();
            match (then, now) {
                (Some(a), Some(b)) if a == b => {}
                (None, None) => {}
                (Some(_), Some(_)) => out.push(format!("{key} changed")),
                (Some(_), None) => out.push(format!("{key} is no longer cached")),
                (None, Some(_)) => out.push(format!("{key} is now cached")),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(vendor: Vendor, kind: &str, id: &str) -> CollateralKey {
        CollateralKey::new(vendor, kind, id)
    }

    fn tcb(id: &str) -> CollateralKey {
        key(Vendor::Intel, "tcb-info", id)
    }

    #[test]
    fn keys_print_vendor_kind_and_id() {
        assert_eq!(tcb("tdx/b0c06f000000").to_string(), "Intel/tcb-info/tdx/b0c06f000000");
        assert_eq!(Vendor::serving(TeeKind::Tdx), Some(Vendor::Intel));
        assert_eq!(Vendor::serving(TeeKind::Nvidia), Some(Vendor::Nvidia));
        assert_eq!(Vendor::serving(TeeKind::Sim), None);
        assert_eq!(Vendor::serving(TeeKind::Cca), None);
    }

    #[test]
    fn a_record_covers_the_needs_and_the_vendors_shared_items_in_key_order() {
        let qe = key(Vendor::Intel, "qe-identity", "sgx");
        let chain = key(Vendor::Intel, "tcb-info-issuer-chain", "sgx/other");
        let ours = tcb("sgx/00906ed50000");
        let theirs = tcb("sgx/00a067110000");
        let amd = key(Vendor::Amd, "ask-ark", "Milan");
        let cache = [
            (&theirs, b"their tcb info".as_slice()),
            (&qe, b"qe identity".as_slice()),
            (&amd, b"amd".as_slice()),
            (&ours, b"our tcb info".as_slice()),
            (&chain, b"chain".as_slice()),
        ];
        // Needs given out of order and twice: the record sorts and deduplicates them.
        let crl = key(Vendor::Intel, "pck-crl", "processor");
        let needs = [ours.clone(), crl.clone(), ours.clone()];
        let record = CollateralRecord::of(TeeKind::Sgx, &needs, cache);
        assert_eq!(record.needs, vec![crl.clone(), ours.clone()]);
        let keys: Vec<_> = record.items.iter().map(|i| i.key.clone()).collect();
        // Another platform's TCB info and another vendor's items are not in it; the shared
        // issuer chain is, whatever its id; the missing CRL is recorded as missing.
        assert_eq!(keys, vec![crl.clone(), qe.clone(), ours.clone(), chain.clone()]);
        assert_eq!(record.items[0].sha256, None);
        let digest = |b: &[u8]| Some(Hex(Sha256::digest(b).to_vec()));
        assert_eq!(record.items[2].sha256, digest(b"our tcb info"));
        // The order in which the cache is walked does not matter.
        let mut reversed = cache;
        reversed.reverse();
        assert_eq!(CollateralRecord::of(TeeKind::Sgx, &needs, reversed), record);
        // TEEs without cached collateral record nothing.
        assert_eq!(CollateralRecord::of(TeeKind::Sim, &needs, cache), CollateralRecord::default());
    }

    #[test]
    fn changed_added_and_removed_items_are_named() {
        let ours = tcb("sgx/00906ed50000");
        let crl = key(Vendor::Intel, "pck-crl", "processor");
        let qe = key(Vendor::Intel, "qe-identity", "sgx");
        let needs = [ours.clone(), crl.clone()];
        let then = CollateralRecord::of(
            TeeKind::Sgx,
            &needs,
            [(&ours, b"up to date".as_slice()), (&qe, b"qe".as_slice())],
        );
        assert!(then.changes(&then.clone()).is_empty());
        let now = CollateralRecord::of(
            TeeKind::Sgx,
            &needs,
            [(&ours, b"revoked".as_slice()), (&crl, b"crl".as_slice())],
        );
        assert_eq!(
            then.changes(&now),
            vec![
                "Intel/pck-crl/processor is now cached",
                "Intel/qe-identity/sgx is no longer cached",
                "Intel/tcb-info/sgx/00906ed50000 changed",
            ]
        );
        // Another platform's TCB info changing does not concern this one.
        let other = tcb("sgx/00a067110000");
        let unrelated = CollateralRecord::of(
            TeeKind::Sgx,
            &needs,
            [(&ours, b"up to date".as_slice()), (&qe, b"qe".as_slice()), (&other, b"x".as_slice())],
        );
        assert!(then.changes(&unrelated).is_empty());
    }

    #[test]
    fn records_round_trip_through_json() {
        let ours = tcb("sgx/00906ed50000");
        let record = CollateralRecord::of(
            TeeKind::Sgx,
            std::slice::from_ref(&ours),
            [(&ours, b"x".as_slice())],
        );
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["items"][0]["key"]["vendor"], "intel");
        let back: CollateralRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back, record);
        let extra = serde_json::json!({"needs": [], "items": [], "skip": true});
        assert!(serde_json::from_value::<CollateralRecord>(extra).is_err());
    }
}
