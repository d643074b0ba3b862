# Cloister policy library: judgements shared by the built-in policies, loaded beside every
# appraisal policy (built-in or custom) as `data.cloister.lib`.
#
# Vendors say different things about a platform's patch level, so "is the TCB current?" is
# answered per TEE here, once:
#   sgx, tdx  the TCB status from Intel's collateral is `UpToDate`;
#   snp       AMD publishes no status: every component of the reported TCB is at least
#             `reference_values.snp_minimum_tcb`, e.g. {"bootloader": 3, "tee": 0, "snp": 8,
#             "microcode": 115}; without a configured minimum the TCB cannot be judged;
#   nitro     the platform is managed by AWS and makes no TCB claim: current;
#   nvidia    (a GPU attached to a CPU TEE) its measurements matched the vendor's RIMs: every
#             active measurement of a VBIOS and a driver RIM for its versions, each RIM's XML
#             signature verified to NVIDIA's RIM signing root (`rim_root == "nvidia"`); RIMs
#             signed under a test root an instance named (`rim_root == "test"`) are never NVIDIA's
#             word (`gpu_rims_matched_test_root`, for development policies only);
#   cca, csv, psa, virtcca
#             no vendor TCB status exists: accepted, with a caution that says so;
#   android   Google's revocation status list was checked (`UpToDate`; the service fetches
#             it); without one (offline verification) accepted with a caution that revocation
#             was not checked.
#
# Whether the platform itself is genuine is judged here when the verifier may not know
# (`platform_rejections`):
#   virtcca   the CVM token is signed by a key it carries itself; only a platform token whose AIK
#             chains to a Huawei root the instance lists (`virtcca.platform_verified`) says the
#             platform is Kunpeng hardware. Without it the evidence proves nothing.
# A status listed in `reference_values.allowed_tcb_statuses` is accepted with a caution.
#
# What ran, beyond the launch measurement, is judged here too (`runtime_rejections`):
#   psa       with `reference_values.psa_software_components` (a list of objects with
#             `measurement_value` and optionally `signer_id`, `measurement_type`, `version`,
#             lowercase hex), every software component the token lists must match one of them,
#             and the token then needs no entry in `measurements`;
#   android   the key lives in TrustZone or StrongBox (security level `trusted_environment` or
#             `strong_box`, never `software`), the device booted verified (`verified_boot_state`
#             `verified`) and is locked;
#   tdx       MRTD (the `measurement`) covers only the firmware; RTMR0 (firmware configuration),
#             RTMR1 (bootloader and kernel) and RTMR2 (kernel command line and initrd) must each
#             be one of `reference_values.rtmr0` … `rtmr2` (lowercase hex, usually in the `tdx`
#             section), replayed from the TD's event log with `cloister measure --tee tdx
#             --event-log`; none configured means nothing is accepted.
#
# Where the evidence's root came from is a separate judgement (`test_root`): evidence of sgx,
# tdx, snp or nitro whose chain ends at a test root the instance names
# (`trust_anchors.test_roots`, the claim `<tee>.trust_anchor == "test"`) is development evidence
# like `sim`, never the vendor's word; the built-in policies refuse it (`default`) or accept it
# as a warning at best (`dev-sim`).
package cloister.lib

claims := input.claims

reference_values := rv if {
	rv := input.reference_values
	is_object(rv)
} else := {}

# A configured list, or an empty one when missing or not a list.
configured(name) := list if {
	list := reference_values[name]
	is_array(list)
} else := []

measurements := configured("measurements")

allowed_tcb_statuses := configured("allowed_tcb_statuses")

allowed_advisories := configured("allowed_advisories")

hardware if input.tee != "sim"

# The evidence verified under a test root the instance names: development only.
test_root if claims[input.tee].trust_anchor == "test"

snp_minimum_tcb := m if {
	m := reference_values.snp_minimum_tcb
	is_object(m)
	count(m) > 0
}

snp_tcb_meets_minimum if {
	input.tee == "snp"
	reported := claims.snp.reported_tcb
	every field, minimum in snp_minimum_tcb {
		reported[field] >= minimum
	}
}

# The verifier appraised every active measurement against signature-verified RIMs whose
# signer chains end at `root`.
gpu_rims_appraised(root) if {
	input.tee == "nvidia"
	claims.nvidia.measurements_appraised == true
	claims.nvidia.rim_signature_verified == true
	claims.nvidia.rim_root == root
}

gpu_rims_matched if gpu_rims_appraised("nvidia")

gpu_rims_matched_test_root if gpu_rims_appraised("test")

# The hardware TCB is current.
tcb_current if {
	hardware
	claims.tcb_status == "UpToDate"
}

tcb_current if snp_tcb_meets_minimum

tcb_current if input.tee == "nitro"

tcb_current if gpu_rims_matched

no_vendor_tcb_status if input.tee in {"cca", "csv", "psa", "virtcca"}

android_revocation_unchecked if {
	input.tee == "android"
	claims.android.revocation_checked == false
}

psa_components := configured("psa_software_components")

# A configured component matches a token's: the measurement value, and each other field the
# configuration names.
psa_component_matches(component, expected) if {
	is_object(expected)
	lower(expected.measurement_value) == component.measurement_value
	every field in ["signer_id", "measurement_type", "version"] {
		psa_field_matches(component, expected, field)
	}
}

psa_field_matches(_, expected, field) if not field in object.keys(expected)

psa_field_matches(component, expected, field) if {
	is_string(expected[field])
	lower(expected[field]) == lower(component[field])
}

psa_component_known(component) if {
	some expected in psa_components
	psa_component_matches(component, expected)
}

psa_components_known if {
	input.tee == "psa"
	count(psa_components) > 0
	count(claims.psa.software_components) > 0
	every component in claims.psa.software_components {
		psa_component_known(component)
	}
}

platform_rejections contains msg if {
	input.tee == "virtcca"
	not claims.virtcca.platform_verified == true
	msg := sprintf("virtcca: the platform is not verified to a Huawei root the instance lists (%v); the CVM token alone is signed by a key it carries itself", [object.get(object.get(claims, "virtcca", {}), "platform", "unknown")])
}

# The hardware TCB is acceptable, perhaps with a caution.
tcb_accepted if tcb_current

tcb_accepted if {
	hardware
	claims.tcb_status in allowed_tcb_statuses
}

tcb_accepted if no_vendor_tcb_status

tcb_accepted if android_revocation_unchecked

measurement_known if {
	some m in measurements
	is_string(m)
	lower(m) == claims.measurement
}

# A GPU's measurements are appraised against RIMs by the verifier, not listed by hand.
measurement_known if gpu_rims_matched

# A PSA token's software components, each matched against the configured ones.
measurement_known if psa_components_known

# The TDX runtime measurement registers every policy pins.
tdx_pinned_rtmrs := ["rtmr0", "rtmr1", "rtmr2"]

tdx_rtmr_known(name) if {
	some m in configured(name)
	is_string(m)
	lower(m) == claims.tdx[name]
}

runtime_rejections contains msg if {
	input.tee == "psa"
	count(psa_components) > 0
	some component in claims.psa.software_components
	not psa_component_known(component)
	msg := sprintf("psa: software component %v (measurement %v) is not one of reference_values.psa_software_components", [object.get(component, "measurement_type", "unnamed"), component.measurement_value])
}

runtime_rejections contains "psa: the token lists no software components, so there is nothing to match reference_values.psa_software_components" if {
	input.tee == "psa"
	count(psa_components) > 0
	count(claims.psa.software_components) == 0
}

runtime_rejections contains msg if {
	input.tee == "android"
	not claims.android.security_level in {"trusted_environment", "strong_box"}
	msg := sprintf("android: the key is attested at security level %v, not in TrustZone (trusted_environment) or StrongBox", [claims.android.security_level])
}

runtime_rejections contains msg if {
	input.tee == "android"
	claims.android.root_of_trust.verified_boot_state != "verified"
	msg := sprintf("android: verified boot state is %v, not verified", [claims.android.root_of_trust.verified_boot_state])
}

runtime_rejections contains "android: the device's bootloader is unlocked" if {
	input.tee == "android"
	claims.android.root_of_trust.device_locked != true
}

runtime_rejections contains msg if {
	input.tee == "tdx"
	some name in tdx_pinned_rtmrs
	count(configured(name)) == 0
	msg := sprintf("tdx: no reference values for %v are configured (replay them from the TD's event log with `cloister measure --tee tdx --event-log`)", [name])
}

runtime_rejections contains msg if {
	input.tee == "tdx"
	some name in tdx_pinned_rtmrs
	count(configured(name)) > 0
	not tdx_rtmr_known(name)
	reported := object.get(object.get(claims, "tdx", {}), name, "absent")
	msg := sprintf("tdx: %v %v is not one of the reference values", [name, reported])
}

# Why a hardware TCB is refused.
tcb_rejections contains msg if {
	hardware
	not tcb_accepted
	not input.tee in {"snp", "nvidia"}
	msg := sprintf("TCB status %v is neither UpToDate nor in allowed_tcb_statuses", [claims.tcb_status])
}

tcb_rejections contains "snp: reference_values.snp_minimum_tcb is not configured, so the reported TCB cannot be judged" if {
	input.tee == "snp"
	not tcb_accepted
	not snp_minimum_tcb
}

tcb_rejections contains msg if {
	input.tee == "snp"
	not tcb_accepted
	snp_minimum_tcb
	msg := sprintf("snp: reported TCB %v is below the minimum %v", [claims.snp.reported_tcb, snp_minimum_tcb])
}

tcb_rejections contains "nvidia: GPU measurements were not appraised against reference integrity manifests (RIMs)" if {
	input.tee == "nvidia"
	not tcb_accepted
	not gpu_rims_matched_test_root
}

tcb_rejections contains "nvidia: the GPU's RIMs are signed under a test root, not NVIDIA's RIM signing root" if {
	input.tee == "nvidia"
	not tcb_accepted
	gpu_rims_matched_test_root
}

# Caveats of an accepted hardware TCB.
tcb_cautions contains msg if {
	hardware
	tcb_accepted
	not tcb_current
	not no_vendor_tcb_status
	not android_revocation_unchecked
	msg := sprintf("TCB status %v is accepted because allowed_tcb_statuses lists it", [claims.tcb_status])
}

tcb_cautions contains "android: no revocation status list was given, so a revoked attestation key would not be noticed" if android_revocation_unchecked

tcb_cautions contains msg if {
	no_vendor_tcb_status
	not tcb_current
	msg := sprintf("%v publishes no TCB status; the platform's patch level is not appraised", [input.tee])
}
