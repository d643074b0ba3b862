//! Trust anchors: the roots an attestation instance accepts evidence from.
//!
//! Every TEE driver looks up its own roots here. An instance that lists no root for a TEE
//! rejects all evidence from that TEE; there is no "accept anything" setting.
//!
//! A root comes from one of three places, and the claims of evidence that verified say which
//! (`trust_anchor`, an [`AnchorOrigin`]): the vendor's root the driver pins (`vendor`), a root the
//! instance lists ([`TrustAnchors::with_root`], `instance`), or a **test root** the instance
//! names as such ([`TrustAnchors::with_test_root`], `test`): a development trust anchor like a
//! `sim` platform key, whose evidence the production `default` policy refuses.

use std::collections::BTreeMap;

use cloister_types::TeeKind;
pub use cloister_types::sim::{
    SIM_PLATFORM_KEY_PREFIX, SimPlatformKeyTextError, SimPlatformPublicKey,
};

/// The roots of trust an attestation instance accepts, per TEE.
///
/// Built empty with [`TrustAnchors::new`] and extended with `with_*` methods. Evidence from a TEE
/// with no anchor here never verifies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustAnchors {
    sim_platform_keys: Vec<SimPlatformPublicKey>,
    roots: BTreeMap<TeeKind, Vec<Vec<u8>>>,
    test_roots: BTreeMap<TeeKind, Vec<Vec<u8>>>,
    nvidia_rim_test_roots: Vec<Vec<u8>>,
}

/// Where the root a verified chain ends at comes from: the `trust_anchor` claim of every TEE
/// whose drivers take test roots ([`TrustAnchors::TEST_ROOT_TEES`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnchorOrigin {
    /// A vendor root the driver pins (Intel SGX Root CA, AMD ARKs, AWS Nitro Root G1).
    Vendor,
    /// A root the instance lists ([`TrustAnchors::with_root`]).
    Instance,
    /// A test root the instance names as such ([`TrustAnchors::with_test_root`]): development
    /// only; the production `default` policy refuses it.
    Test,
}

impl AnchorOrigin {
    /// The claim's value: `vendor`, `instance` or `test`.
    pub fn as_str(self) -> &'static str {
        match self {
            AnchorOrigin::Vendor => "vendor",
            AnchorOrigin::Instance => "instance",
            AnchorOrigin::Test => "test",
        }
    }
}

impl TrustAnchors {
    /// No anchors at all: every piece of evidence is rejected.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also trusts evidence of the simulated TEE signed by `key`.
    ///
    /// Only development instances should do this: the simulated TEE protects nothing.
    #[must_use]
    pub fn with_sim_platform_key(mut self, key: SimPlatformPublicKey) -> Self {
        if !self.sim_platform_keys.contains(&key) {
            self.sim_platform_keys.push(key);
        }
        self
    }

    /// The simulated platform keys this instance trusts (empty in production).
    pub fn sim_platform_keys(&self) -> &[SimPlatformPublicKey] {
        &self.sim_platform_keys
    }

    /// Also trusts `anchor` for evidence of `tee`, in addition to the vendor roots the driver
    /// has built in. What the bytes may be is the driver's to say (an X.509 root certificate in
    /// DER or PEM, a CCA CPAK as a JWK or PEM public key, …); a driver refuses anchors it cannot
    /// read rather than ignoring them.
    #[must_use]
    pub fn with_root(mut self, tee: TeeKind, anchor: Vec<u8>) -> Self {
        let list = self.roots.entry(tee).or_default();
        if !list.contains(&anchor) {
            list.push(anchor);
        }
        self
    }

    /// The TEEs whose drivers take test roots ([`Self::with_test_root`]): their chains end at
    /// one X.509 root the driver would otherwise pin, or (PSA) a token is signed by an IAK whose
    /// public key is the test root, in the forms [`check_key_anchor`](crate::check_key_anchor)
    /// reads (TF-M's published development key, for example).
    pub const TEST_ROOT_TEES: [TeeKind; 6] =
        [TeeKind::Sgx, TeeKind::Tdx, TeeKind::Snp, TeeKind::Nitro, TeeKind::Android, TeeKind::Psa];

    /// Also accepts evidence of `tee` whose chain ends at `root`, an X.509 root certificate in
    /// DER or PEM, **as a test root**: such evidence verifies, and its claims say
    /// `"trust_anchor": "test"` instead of `"vendor"` or `"instance"`, which the production
    /// `default` policy refuses and `dev-sim` accepts as a warning at best. What the root may
    /// sign is what the vendor's root signs for that TEE (for DCAP: the PCK chain and the
    /// collateral's signing chain; for SEV-SNP: the ASK or ASVK, named as AMD names them).
    ///
    /// Only development and test instances should do this. A root listed here for one TEE is no
    /// root for another, and it is not [`Self::with_root`]: the claims say which list matched,
    /// and a root in both is marked `test`. Drivers of TEEs not in [`Self::TEST_ROOT_TEES`]
    /// ignore these; the service refuses to configure them.
    #[must_use]
    pub fn with_test_root(mut self, tee: TeeKind, root: Vec<u8>) -> Self {
        let list = self.test_roots.entry(tee).or_default();
        if !list.contains(&root) {
            list.push(root);
        }
        self
    }

    /// The test roots this instance names for `tee`, as given to [`Self::with_test_root`]
    /// (empty in production).
    pub fn test_roots(&self, tee: TeeKind) -> &[Vec<u8>] {
        self.test_roots.get(&tee).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Where the root certificate with SHA-256 `fingerprint` comes from, for a chain of `tee`
    /// that verified to it: `test` when it is one of the instance's test roots for `tee` (even
    /// if it is also a vendor root or listed as a root: the conservative answer), `vendor` when
    /// it is one of `vendor_pins`, otherwise `instance`. Anchors that do not parse match
    /// nothing (the drivers refuse or skip them when they build their pinned sets).
    pub(crate) fn origin_of(
        &self,
        tee: TeeKind,
        fingerprint: &[u8; 32],
        vendor_pins: &[[u8; 32]],
    ) -> AnchorOrigin {
        let listed = |anchors: &[Vec<u8>]| {
            anchors.iter().any(|anchor| {
                crate::x509::Cert::parse_many(anchor).is_ok_and(|certs| {
                    certs.iter().any(|cert| &cert.sha256_fingerprint() == fingerprint)
                })
            })
        };
        if listed(self.test_roots(tee)) {
            AnchorOrigin::Test
        } else if vendor_pins.contains(fingerprint) {
            AnchorOrigin::Vendor
        } else {
            AnchorOrigin::Instance
        }
    }

    /// Also accepts NVIDIA RIMs (reference integrity manifests) whose signer chain ends at
    /// `root`, an X.509 root certificate in DER or PEM, **as a test root**: RIMs signed under it
    /// verify, and their claims say `"rim_root": "test"` instead of `"nvidia"`, which the
    /// production `default` policy refuses and `dev-sim` accepts as a warning at best.
    ///
    /// Only development and test instances should do this. It is not [`Self::with_root`]: a
    /// device root listed there never signs RIMs.
    #[must_use]
    pub fn with_nvidia_rim_test_root(mut self, root: Vec<u8>) -> Self {
        if !self.nvidia_rim_test_roots.contains(&root) {
            self.nvidia_rim_test_roots.push(root);
        }
        self
    }

    /// The NVIDIA RIM test roots this instance names (empty in production).
    pub fn nvidia_rim_test_roots(&self) -> &[Vec<u8>] {
        &self.nvidia_rim_test_roots
    }

    /// The extra anchors this instance lists for `tee`, as given to [`Self::with_root`].
    pub fn roots(&self, tee: TeeKind) -> &[Vec<u8>] {
        self.roots.get(&tee).map(Vec::as_slice).unwrap_or(&[])
    }
}
