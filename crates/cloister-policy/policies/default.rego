# Cloister production default appraisal policy (`AppraisalPolicy::production_default()`).
#
# Accepts hardware TEE evidence only:
# - never the simulated TEE (`sim`);
# - never evidence under a test root the instance names (`trust_anchors.test_roots`: the claim
#   `<tee>.trust_anchor == "test"`);
# - never debug mode;
# - a current TCB as judged per TEE by the policy library (lib.rego: Intel's `UpToDate`, an SNP
#   minimum TCB, GPU measurements matched against RIMs signed by NVIDIA — never a test root —, …),
#   or a status listed in
#   `reference_values.allowed_tcb_statuses` (warning);
# - every advisory listed in `reference_values.allowed_advisories` (warning when any is present);
# - a measurement listed in `reference_values.measurements` (lowercase hex); none configured
#   means nothing is accepted;
# - for virtCCA, a platform token whose AIK chains to a Huawei root the instance lists
#   (lib.rego `platform_rejections`);
# - for TDX, RTMR0-2 each listed in `reference_values.rtmr0` … `rtmr2` (lib.rego), so a policy
#   pins the kernel and command line, not only the firmware.
#
# Trustworthiness vector: AR4SI claims with EAR tier codes (draft-ietf-rats-ar4si):
#   2..31 affirming, 32..95 warning, 96..127 contraindicated, 0 no claim (omitted).
#   instance-identity  2 hardware TEE            96 simulated TEE or test root (no platform identity)
#   configuration      2 production, up to date  32 accepted TCB caveat   96 debug or TCB refused
#   executables        2 reference measurement   33 unrecognised measurement
#   hardware           2 genuine, up to date     32 known issues allowed  97 simulated, test root or refused
#   runtime-opaque     2 memory encrypted        96 visible to the host (debug mode, simulated)
# file-system, storage-opaque and sourced-data are not asserted.
package cloister.appraisal

import data.cloister.lib

claims := input.claims

measurements := lib.measurements

allowed_advisories := lib.allowed_advisories

tee_is_sim if input.tee == "sim"

# Per-TEE TCB judgements live in the policy library (lib.rego).
up_to_date if lib.tcb_current

tcb_accepted if lib.tcb_accepted

measurement_known if lib.measurement_known

has_advisories if count(claims.advisories) > 0

# Why the evidence is refused; any entry makes the result contraindicated.
rejections contains "the simulated TEE is not accepted by this policy" if tee_is_sim

rejections contains msg if {
	lib.test_root
	msg := sprintf("%v: the evidence is signed under a test root the instance names (trust_anchors.test_roots), not the vendor's root: development only", [input.tee])
}

rejections contains "the TEE runs in debug mode, so the host can read its memory" if claims.debug == true

rejections contains msg if some msg in lib.tcb_rejections

rejections contains msg if {
	some a in claims.advisories
	not a in allowed_advisories
	msg := sprintf("advisory %v is not in allowed_advisories", [a])
}

rejections contains msg if some msg in lib.runtime_rejections

rejections contains msg if some msg in lib.platform_rejections

rejections contains "no reference measurements are configured" if {
	count(measurements) == 0
	not measurement_known
}

rejections contains msg if {
	count(measurements) > 0
	not measurement_known
	msg := sprintf("measurement %v is not one of the reference measurements", [claims.measurement])
}

# Caveats of an accepted result; any entry makes it a warning.
cautions contains msg if some msg in lib.tcb_cautions

cautions contains msg if {
	some a in claims.advisories
	a in allowed_advisories
	msg := sprintf("advisory %v applies and is accepted by allowed_advisories", [a])
}

default status := "contraindicated"

status := "affirming" if {
	count(rejections) == 0
	count(cautions) == 0
}

status := "warning" if {
	count(rejections) == 0
	count(cautions) > 0
}

instance_identity := 96 if {
	tee_is_sim
} else := 96 if {
	lib.test_root
} else := 96 if {
	count(lib.platform_rejections) > 0
} else := 2

configuration := 96 if {
	claims.debug == true
} else := 96 if {
	not tcb_accepted
} else := 32 if {
	not up_to_date
} else := 2

executables := 2 if {
	measurement_known
	count(lib.runtime_rejections) == 0
} else := 33

hardware := 97 if {
	tee_is_sim
} else := 97 if {
	lib.test_root
} else := 97 if {
	count(lib.platform_rejections) > 0
} else := 97 if {
	not tcb_accepted
} else := 32 if {
	not up_to_date
} else := 32 if {
	has_advisories
} else := 2

runtime_opaque := 96 if {
	tee_is_sim
} else := 96 if {
	claims.debug == true
} else := 2

result := {
	"status": status,
	"trustworthiness_vector": {
		"instance-identity": instance_identity,
		"configuration": configuration,
		"executables": executables,
		"hardware": hardware,
		"runtime-opaque": runtime_opaque,
	},
	"reasons": array.concat(sort(rejections), sort(cautions)),
}
