# Cloister appraisal policy for workers in Confidential Containers pods (deploy/k8s/): the
# production default (crates/cloister-policy/policies/default.rego, repeated below; only the
# `configuration` tier also says 96 for an unexpected initdata)
# and one requirement more: the pod was launched with the expected initdata.
#
# Kata launches the pod's TEE with the digest of its initdata (deploy/k8s/initdata.sh) in a
# field the evidence carries and the host cannot change afterwards: AMD SEV-SNP HOST_DATA
# (`claims.snp.host_data`) and Intel TDX MRCONFIGID (`claims.tdx.mr_config_id`). The initdata
# holds the Kata agent policy that admits only the worker container with its pinned service URL
# and fingerprint, so requiring the digest requires that configuration, which the launch
# measurement alone (the pod VM's firmware, kernel and initrd, the same for every pod) does not.
#
# Reference values, besides the default policy's (`measurements`, `snp_minimum_tcb`,
# `allowed_tcb_statuses`, `allowed_advisories`):
#   "snp_host_data":    ["<64 hex digits>", …]   as deploy/k8s/initdata.sh prints them
#   "tdx_mr_config_id": ["<96 hex digits>", …]
# Evidence from any other TEE is refused: this policy is for CoCo pods only.
#
# Upload: cloister instance update in_… --policy-file deploy/policies/coco-initdata.rego \
#             --reference-values reference-values.json
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

rejections contains "the TEE runs in debug mode, so the host can read its memory" if claims.debug == true

rejections contains msg if some msg in lib.tcb_rejections

rejections contains msg if {
	some a in claims.advisories
	not a in allowed_advisories
	msg := sprintf("advisory %v is not in allowed_advisories", [a])
}

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

instance_identity := 96 if tee_is_sim else := 2

configuration := 96 if {
	claims.debug == true
} else := 96 if {
	not initdata_known
} else := 96 if {
	not tcb_accepted
} else := 32 if {
	not up_to_date
} else := 2

executables := 2 if measurement_known else := 33

hardware := 97 if {
	tee_is_sim
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

# --- The initdata requirement (the only addition to the default policy) ---------------------

initdata_values(name) := [lower(v) | some v in lib.configured(name); is_string(v)]

rejections contains msg if {
	not input.tee in {"snp", "tdx"}
	msg := sprintf("this policy accepts Confidential Containers pods on snp or tdx only, not %v", [input.tee])
}

rejections contains "snp: reference_values.snp_host_data is not configured, so the pod's initdata cannot be checked" if {
	input.tee == "snp"
	count(initdata_values("snp_host_data")) == 0
}

rejections contains msg if {
	input.tee == "snp"
	count(initdata_values("snp_host_data")) > 0
	not lower(claims.snp.host_data) in initdata_values("snp_host_data")
	msg := sprintf("snp: HOST_DATA %v is not the digest of an expected initdata", [claims.snp.host_data])
}

rejections contains "tdx: reference_values.tdx_mr_config_id is not configured, so the pod's initdata cannot be checked" if {
	input.tee == "tdx"
	count(initdata_values("tdx_mr_config_id")) == 0
}

rejections contains msg if {
	input.tee == "tdx"
	count(initdata_values("tdx_mr_config_id")) > 0
	not lower(claims.tdx.mr_config_id) in initdata_values("tdx_mr_config_id")
	msg := sprintf("tdx: MRCONFIGID %v is not the digest of an expected initdata", [claims.tdx.mr_config_id])
}

initdata_known if {
	input.tee == "snp"
	lower(claims.snp.host_data) in initdata_values("snp_host_data")
}

initdata_known if {
	input.tee == "tdx"
	lower(claims.tdx.mr_config_id) in initdata_values("tdx_mr_config_id")
}
