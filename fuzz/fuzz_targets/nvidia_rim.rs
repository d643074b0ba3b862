//! Fuzz target: arbitrary bytes as an NVIDIA RIM (SWID tag) and as an OCSP response: the XML
//! reader, both canonicalisations of the document and of its SignedInfo, the signature check
//! (at a time inside NVIDIA's sample signer's validity, so a seed of a real RIM verifies and
//! its mutations are refused), and the OCSP parser. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

const C14N11: &str = "http://www.w3.org/2006/12/xml-c14n11";
const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#WithComments";

fuzz_target!(|data: &[u8]| {
    for algorithm in [C14N11, EXC_C14N] {
        let _ = cloister_verify::internal::canonical_rim(data, false, algorithm);
        let _ = cloister_verify::internal::canonical_rim(data, true, algorithm);
    }
    let _ = cloister_verify::internal::verify_rim(data, &[], 1_718_000_000);
    if cloister_verify::is_ocsp_response(data) {
        let _ = cloister_verify::ocsp::OcspResponse::from_der(data);
    }
});
