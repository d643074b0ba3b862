//! A sealed data set's manifest: what `cloister data seal` signs for the owner, naming every
//! sealed shard by the digests of its ciphertext and of its plaintext, the schema and row counts,
//! the data set it was sealed from and, for a derived data set, its lineage.

use serde::{Deserialize, Serialize};

/// The manifest format this build writes and reads.
pub const DATASET_MANIFEST_VERSION: u32 = 1;

/// What a manifest is signed as (the signed token's kind claim): a token signed as anything else
/// does not verify as a manifest.
pub const DATASET_MANIFEST_KIND: &str = "data set manifest";

/// The content type of a sealed shard's plaintext (a Parquet file).
pub const PARQUET_CONTENT_TYPE: &str = "application/vnd.apache.parquet";

/// The manifest of a sealed data set, signed by its owner as a compact JWS.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetManifest {
    /// [`DATASET_MANIFEST_VERSION`].
    pub version: u32,
    /// The data set's id: its shards are the objects [`shard_object_id`]`(id, index)`.
    pub id: String,
    /// The owner's party public key (text form): the signer, and the owner attribute of every
    /// sealed shard's envelope.
    pub owner: String,
    /// The columns and their types, as `dataset.json` lists them.
    pub schema: Vec<ManifestField>,
    /// Rows in all shards together.
    pub rows: u64,
    /// The sealed shards, in order.
    pub shards: Vec<ManifestShard>,
    /// SHA-256 (hex) of the `dataset.json` bytes the data set was sealed from.
    pub source: String,
    /// How a derived data set was made from its input (`dataset.json`'s `lineage`, as it is
    /// there); absent for ingested and labelled data sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lineage: Option<serde_json::Value>,
}

/// One column of a manifest's schema.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestField {
    /// The column's name.
    pub name: String,
    /// Its type (`int`, `float`, `string` or `bool`).
    #[serde(rename = "type")]
    pub ty: String,
}

/// One sealed shard of a manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestShard {
    /// The sealed object's id (in its envelope's authenticated metadata).
    pub object_id: String,
    /// SHA-256 (hex) of the sealed envelope's bytes.
    pub sha256: String,
    /// SHA-256 (hex) of the plaintext shard file (the digest `dataset.json` names).
    pub plaintext_sha256: String,
    /// Rows in the shard.
    pub rows: u64,
}

/// The object id of shard `index` of data set `id`: `ID.shard-00000`, ….
pub fn shard_object_id(id: &str, index: usize) -> String {
    format!("{id}.shard-{index:05}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_object_ids_are_numbered_from_zero_with_five_digits() {
        assert_eq!(shard_object_id("visits", 0), "visits.shard-00000");
        assert_eq!(shard_object_id("visits", 12), "visits.shard-00012");
        assert!(crate::job::is_object_id(&shard_object_id("visits-2026", 99_999)));
    }

    #[test]
    fn a_manifest_without_lineage_omits_it() {
        let manifest = DatasetManifest {
            version: DATASET_MANIFEST_VERSION,
            id: "visits".into(),
            owner: "owner".into(),
            schema: vec![ManifestField { name: "age".into(), ty: "int".into() }],
            rows: 2,
            shards: Vec::new(),
            source: "00".repeat(32),
            lineage: None,
        };
        let json = serde_json::to_value(&manifest).unwrap_or_default();
        assert!(json.get("lineage").is_none());
        assert_eq!(json["schema"][0]["type"], "int");
    }
}
