//! Trust anchors: the roots an attestation instance accepts evidence from.
//!
//! Every TEE driver looks up its own roots here. An instance that lists no root for a TEE
//! rejects all evidence from that TEE; there is no "accept anything" setting.

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
    nvidia_rim_test_roots: Vec<Vec<u8>>,
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
