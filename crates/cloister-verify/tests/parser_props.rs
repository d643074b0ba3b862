//! Property tests: the sim evidence parser never panics, whatever bytes it is given.

use cloister_verify::internal::parse_sim_evidence;
use proptest::prelude::*;

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse_sim_evidence(&bytes);
    }

    #[test]
    fn random_json_shaped_input_never_panics(
        report in "[A-Za-z0-9_-]{0,200}",
        signature in "[A-Za-z0-9_-]{0,120}",
    ) {
        let text = format!(r#"{{"report":"{report}","signature":"{signature}"}}"#);
        prop_assert!(parse_sim_evidence(text.as_bytes()).is_err());
    }
}
