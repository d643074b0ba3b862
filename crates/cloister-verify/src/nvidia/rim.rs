//! NVIDIA reference integrity manifests (RIMs): ISO SWID tags listing the golden measurements of
//! a VBIOS or driver version, and their appraisal against a report's measurement blocks.
//!
//! A RIM's `Payload/Resource` entries carry a 0-based measurement `index`, whether it is
//! `active`, its `size` and one or more golden digests `Hash0..HashN` (SHA-384 namespace). RIM
//! index `i` is the report's measurement block `i + 1` (blocks are numbered from 1). The RIM's
//! version is `Meta/@colloquialVersion`: five two-digit hex groups for a VBIOS
//! (`96.00.5E.00.01`), a dotted decimal for a driver (`550.90.07`).
//!
//! Only the RIM's content is read here, from the signed part of the document (children of the
//! root element; the `ds:Signature` element is not): `dsig.rs` checks the signature over it.

use std::collections::BTreeMap;

use super::xml;

/// The ISO/IEC 19770-2:2015 SWID namespace.
const SWID_NS: &str = "http://standards.iso.org/iso/19770/-2/2015/schema.xsd";
/// The namespace NVIDIA's RIMs put the SHA-384 golden digests in.
const SHA384_NS: &str = "http://www.w3.org/2001/04/xmlenc#sha384";
/// The largest RIM accepted (NVIDIA's are about 20 KiB).
const MAX_RIM_LEN: usize = 4 * 1024 * 1024;
/// The most golden alternatives accepted for one measurement.
const MAX_ALTERNATIVES: usize = 64;

/// What a RIM describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum RimKind {
    /// Golden measurements of a VBIOS version.
    Vbios,
    /// Golden measurements of a driver version.
    Driver,
}

impl RimKind {
    /// The name used in claims and messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            RimKind::Vbios => "VBIOS",
            RimKind::Driver => "driver",
        }
    }

    /// The key used in claims.
    pub(crate) fn key(self) -> &'static str {
        match self {
            RimKind::Vbios => "vbios",
            RimKind::Driver => "driver",
        }
    }
}

/// One golden measurement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Golden {
    /// The RIM's 0-based index.
    pub(crate) index: u16,
    /// Whether the measurement is to be compared.
    pub(crate) active: bool,
    /// The expected size of the measurement value.
    pub(crate) size: usize,
    /// The accepted values.
    pub(crate) alternatives: Vec<Vec<u8>>,
}

/// A parsed RIM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rim {
    /// VBIOS or driver.
    pub(crate) kind: RimKind,
    /// `Meta/@colloquialVersion`.
    pub(crate) version: String,
    /// `SoftwareIdentity/@tagId`.
    pub(crate) tag_id: String,
    /// `SoftwareIdentity/@name` (the chip, `GH100`).
    pub(crate) product: String,
    /// The golden measurements, by RIM index.
    pub(crate) golden: BTreeMap<u16, Golden>,
}

/// Whether `bytes` look like a SWID tag (an XML document whose root is `SoftwareIdentity`).
pub(crate) fn looks_like_swid(bytes: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(bytes) else { return false };
    let text = text.trim_start_matches('\u{feff}').trim_start();
    text.starts_with('<') && text.contains("SoftwareIdentity")
}

/// Reads a RIM's XML. The error says what is wrong with it.
pub(crate) fn parse_document(bytes: &[u8]) -> Result<xml::Document, String> {
    if bytes.len() > MAX_RIM_LEN {
        return Err(format!("the RIM is {} bytes, more than {MAX_RIM_LEN}", bytes.len()));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| "the RIM is not UTF-8 text".to_owned())?;
    xml::parse(text)
}

/// Parses a SWID tag RIM (without checking its signature). The error says what is wrong.
pub(crate) fn parse(bytes: &[u8]) -> Result<Rim, String> {
    from_document(&parse_document(bytes)?)
}

/// The RIM a parsed SWID tag describes. The error says what is wrong with it.
pub(crate) fn from_document(doc: &xml::Document) -> Result<Rim, String> {
    let root = doc.root_element();
    if !root.is(SWID_NS, "SoftwareIdentity") {
        return Err(format!(
            "the root element is {{{}}}{}, not a SWID SoftwareIdentity",
            root.namespace, root.local
        ));
    }
    let tag_id = root.attribute("", "tagId").unwrap_or_default().to_owned();
    let product = root.attribute("", "name").unwrap_or_default().to_owned();
    let children: Vec<_> = doc.child_elements(doc.root).collect();
    let metas: Vec<_> = children
        .iter()
        .filter(|(_, e)| e.is(SWID_NS, "Meta"))
        .filter_map(|(_, e)| e.attribute("", "colloquialVersion"))
        .collect();
    let version = match metas.as_slice() {
        [one] => (*one).to_owned(),
        [] => return Err("no Meta element with a colloquialVersion".into()),
        _ => return Err("more than one Meta element with a colloquialVersion".into()),
    };
    let kind = if is_vbios_version(&version) {
        RimKind::Vbios
    } else if is_driver_version(&version) {
        RimKind::Driver
    } else {
        return Err(format!(
            "colloquialVersion {version:?} is neither a VBIOS (xx.xx.xx.xx.xx) nor a driver \
             (n.n[.n]) version"
        ));
    };
    let payloads: Vec<_> = children.iter().filter(|(_, e)| e.is(SWID_NS, "Payload")).collect();
    let [(payload, _)] = payloads.as_slice() else {
        return Err(format!("the RIM has {} Payload elements, expected 1", payloads.len()));
    };
    let mut golden = BTreeMap::new();
    for (_, e) in doc.child_elements(*payload).filter(|(_, e)| e.is(SWID_NS, "Resource")) {
        let g = parse_resource(e)?;
        if golden.insert(g.index, g).is_some() {
            return Err("a measurement index appears twice".into());
        }
    }
    if golden.is_empty() {
        return Err("the RIM lists no measurements".into());
    }
    Ok(Rim { kind, version, tag_id, product, golden })
}

fn parse_resource(e: &xml::Element) -> Result<Golden, String> {
    let get = |name: &str| {
        e.attribute("", name).ok_or_else(|| format!("a Resource has no {name} attribute"))
    };
    let kind = get("type")?;
    if kind != "Measurement" {
        return Err(format!("a Resource has type {kind:?}, expected \"Measurement\""));
    }
    let index: u16 =
        get("index")?.parse().map_err(|_| "a Resource index is not a number".to_owned())?;
    let active = match get("active")? {
        "True" | "true" => true,
        "False" | "false" => false,
        other => return Err(format!("Resource {index} has active={other:?}")),
    };
    let size: usize =
        get("size")?.parse().map_err(|_| format!("Resource {index} size is not a number"))?;
    let count: usize = get("alternatives")?
        .parse()
        .map_err(|_| format!("Resource {index} alternatives is not a number"))?;
    if count == 0 || count > MAX_ALTERNATIVES {
        return Err(format!("Resource {index} has {count} alternatives"));
    }
    let hashes: Vec<_> = e
        .attributes
        .iter()
        .filter(|a| a.namespace == SHA384_NS && a.local.starts_with("Hash"))
        .collect();
    if hashes.len() != count {
        return Err(format!(
            "Resource {index} says {count} alternatives but carries {} hashes",
            hashes.len()
        ));
    }
    let mut alternatives = Vec::with_capacity(count);
    for n in 0..count {
        let name = format!("Hash{n}");
        let text = e
            .attribute(SHA384_NS, &name)
            .ok_or_else(|| format!("Resource {index} has no {name}"))?;
        let value = hex::decode(text).map_err(|_| format!("Resource {index} {name} is not hex"))?;
        if value.len() != size {
            return Err(format!(
                "Resource {index} {name} is {} bytes, its size says {size}",
                value.len()
            ));
        }
        alternatives.push(value);
    }
    Ok(Golden { index, active, size, alternatives })
}

/// `96.00.5E.00.01`: five groups of two hex digits.
pub(crate) fn is_vbios_version(v: &str) -> bool {
    let groups: Vec<_> = v.split('.').collect();
    groups.len() == 5
        && groups.iter().all(|g| g.len() == 2 && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// `550.90.07` or `545.00`: two or three groups of decimal digits.
fn is_driver_version(v: &str) -> bool {
    let groups: Vec<_> = v.split('.').collect();
    (2..=3).contains(&groups.len())
        && groups
            .iter()
            .all(|g| !g.is_empty() && g.len() <= 4 && g.chars().all(|c| c.is_ascii_digit()))
}
