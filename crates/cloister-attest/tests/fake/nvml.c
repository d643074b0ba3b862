/* A fake NVML (libnvidia-ml) for tests: the confidential-computing calls only, driven by the
 * configuration file compiled in as FAKE_CONFIG (one "key=value" per line):
 *   cc=0|1           the CC feature (nvmlSystemGetConfComputeState)
 *   devtools=0|1     devtools mode
 *   gpus=N           how many GPUs
 *   report=PATH      a template SPDM report: its GET_MEASUREMENTS nonce (bytes 4..36) is
 *                    replaced by the nonce asked for
 *   chain=PATH       the PEM certificate chain returned
 *   tamper=0|1       answer a nonce one bit off the one asked for
 *   nonces=PATH      each nonce asked for is appended here as hex, one line each
 * Written for the tests of crates/cloister-attest; it signs nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { unsigned int environment, ccFeature, devToolsMode; } state_t;
typedef struct {
    unsigned int isCecAttestationReportPresent, attestationReportSize, cecAttestationReportSize;
    unsigned char nonce[0x20];
    unsigned char attestationReport[0x2000];
    unsigned char cecAttestationReport[0x1000];
} report_t;
typedef struct {
    unsigned int certChainSize, attestationCertChainSize;
    unsigned char certChain[0x1000];
    unsigned char attestationCertChain[0x1400];
} certificate_t;

static char value[4096];

/* The value of `key` in the configuration, or NULL. */
static const char *setting(const char *key) {
    FILE *f = fopen(FAKE_CONFIG, "r");
    char line[4200];
    size_t n = strlen(key);
    const char *found = NULL;
    if (!f) return NULL;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, n) == 0 && line[n] == '=') {
            strncpy(value, line + n + 1, sizeof value - 1);
            value[strcspn(value, "\n")] = 0;
            found = value;
            break;
        }
    }
    fclose(f);
    return found;
}

static unsigned int number(const char *key) {
    const char *v = setting(key);
    return v ? (unsigned int)strtoul(v, NULL, 10) : 0;
}

/* Reads `path` into `out` (at most `max` bytes); the size, or -1. */
static long slurp(const char *path, unsigned char *out, size_t max) {
    FILE *f = path ? fopen(path, "rb") : NULL;
    size_t n;
    if (!f) return -1;
    n = fread(out, 1, max, f);
    fclose(f);
    return (long)n;
}

int nvmlInit_v2(void) { return 0; }
int nvmlShutdown(void) { return 0; }
const char *nvmlErrorString(int code) { return code == 999 ? "Unknown Error (fake)" : "fake error"; }

int nvmlDeviceGetCount_v2(unsigned int *count) { *count = number("gpus"); return 0; }

int nvmlDeviceGetHandleByIndex_v2(unsigned int index, void **device) {
    if (index >= number("gpus")) return 2; /* NVML_ERROR_INVALID_ARGUMENT */
    *device = (void *)(size_t)(index + 1);
    return 0;
}

#ifndef NO_CC /* an older driver: no confidential-computing calls */
int nvmlSystemGetConfComputeState(state_t *state) {
    state->environment = 2;
    state->ccFeature = number("cc");
    state->devToolsMode = number("devtools");
    return 0;
}

int nvmlDeviceGetConfComputeGpuAttestationReport(void *device, report_t *report) {
    long n = slurp(setting("report"), report->attestationReport, sizeof report->attestationReport);
    const char *log = setting("nonces");
    (void)device;
    if (n < 36) return 999;
    memcpy(report->attestationReport + 4, report->nonce, 32);
    if (number("tamper")) report->attestationReport[4] ^= 1;
    report->attestationReportSize = (unsigned int)n;
    report->isCecAttestationReportPresent = 0;
    report->cecAttestationReportSize = 0;
    if (log) {
        FILE *f = fopen(log, "a");
        int i;
        if (f) {
            for (i = 0; i < 32; i++) fprintf(f, "%02x", report->nonce[i]);
            fputc('\n', f);
            fclose(f);
        }
    }
    return 0;
}

int nvmlDeviceGetConfComputeGpuCertificate(void *device, certificate_t *certificate) {
    long n = slurp(setting("chain"), certificate->attestationCertChain,
                   sizeof certificate->attestationCertChain);
    (void)device;
    if (n < 0) return 999;
    certificate->attestationCertChainSize = (unsigned int)n;
    certificate->certChainSize = 0;
    return 0;
}
#endif
