# Cloister development policy that accepts the simulated TEE (`AppraisalPolicy::development_sim()`).
#
# For development instances only. It names `sim` explicitly: simulated evidence is accepted when
# its measurement is listed in `reference_values.measurements` and debug is off, and then its
# status is always `warning`, never `affirming`, with the reason
# "simulated TEE: development only, no hardware protection". Evidence of every other TEE is
# judged exactly as by the production default (`default.rego`): no debug, TCB `UpToDate` or
# listed in `allowed_tcb_statuses`, advisories listed in `allowed_advisories`, a reference
# measurement. One exception: a GPU whose RIMs are signed under a test root the instance named
# (`rim_root == "test"`) is accepted like sim, never better than `warning`, with the reason
# "nvidia: RIMs signed under a test root: development only". Likewise evidence of sgx, tdx, snp
# or nitro under a test root the instance names (`trust_anchors.test_roots`, the claim
# `<tee>.trust_anchor == "test"`) is judged like the default judges that TEE (TCB, measurement,
# debug) but never better than `warning`, with the reason "<tee>: evidence signed under a test
# root (trust_anchors.test_roots): development only, no hardware protection".
#
# Trustworthiness vector: AR4SI claims with EAR tier codes (draft-ietf-rats-ar4si):
#   2..31 affirming, 32..95 warning, 96..127 contraindicated, 0 no claim (omitted).
#   instance-identity  2 hardware TEE            32 simulated platform key or test root (no hardware identity)
#   configuration      2 production, up to date  32 accepted TCB caveat   96 debug or TCB refused
#   executables        2 reference measurement   33 unrecognised measurement
#   hardware           2 genuine, up to date     32 simulated, test root, or known issues allowed
#                                                97 TCB refused
#   runtime-opaque     2 memory encrypted        32 simulated or test root (not protected)  96 debug mode
# file-system, storage-opaque and sourced-data are not asserted.
package cloister.appraisal

import data.cloister.lib

claims := input.claims

measurements := lib.measurements

allowed_advisories := lib.allowed_advisories

tee_is_sim if input.tee == "sim"

# The simulated TEE has no TCB: its status is "simulated", which only this policy accepts.
sim_tcb if {
	tee_is_sim
	claims.tcb_status == "simulated"
}

# Per-TEE TCB judgements of hardware TEEs live in the policy library (lib.rego).
up_to_date if lib.tcb_current

tcb_accepted if lib.tcb_accepted

tcb_accepted if sim_tcb

# A GPU appraised against RIMs signed under a named test root: development only.
gpu_test_rims if lib.gpu_rims_matched_test_root

tcb_accepted if gpu_test_rims

measurement_known if lib.measurement_known

measurement_known if gpu_test_rims

has_advisories if count(claims.advisories) > 0

# Why the evidence is refused; any entry makes the result contraindicated.
rejections contains "the TEE runs in debug mode, so the host can read its memory" if claims.debug == true

rejections contains msg if {
	not tee_is_sim
	not gpu_test_rims
	some msg in lib.tcb_rejections
}

rejections contains msg if {
	tee_is_sim
	not sim_tcb
	msg := sprintf("sim evidence must have TCB status simulated, not %v", [claims.tcb_status])
}

rejections contains msg if {
	some a in claims.advisories
	not a in allowed_advisories
	msg := sprintf("advisory %v is not in allowed_advisories", [a])
}

rejections contains msg if some msg in lib.runtime_rejections

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
cautions contains "simulated TEE: development only, no hardware protection" if tee_is_sim

cautions contains "nvidia: RIMs signed under a test root: development only" if gpu_test_rims

cautions contains msg if {
	lib.test_root
	msg := sprintf("%v: evidence signed under a test root (trust_anchors.test_roots): development only, no hardware protection", [input.tee])
}

cautions contains msg if some msg in lib.tcb_cautions

cautions contains msg if some msg in lib.platform_rejections

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

instance_identity := 32 if {
	tee_is_sim
} else := 32 if {
	lib.test_root
} else := 2

configuration := 96 if {
	claims.debug == true
} else := 96 if {
	not tcb_accepted
} else := 32 if {
	not tee_is_sim
	not up_to_date
} else := 2

executables := 2 if {
	measurement_known
	count(lib.runtime_rejections) == 0
} else := 33

hardware := 97 if {
	not tcb_accepted
} else := 32 if {
	tee_is_sim
} else := 32 if {
	lib.test_root
} else := 32 if {
	not up_to_date
} else := 32 if {
	has_advisories
} else := 2

runtime_opaque := 96 if {
	claims.debug == true
} else := 32 if {
	tee_is_sim
} else := 32 if {
	lib.test_root
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
