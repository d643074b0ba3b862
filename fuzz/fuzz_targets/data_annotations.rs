//! Annotation import of the data pipeline (`cloister data annotations import`) over arbitrary
//! bytes, in each format (Label Studio, COCO, CoNLL, JSON-lines spans; the first byte picks):
//! rows or an error, never a panic.
#![no_main]

use cloister_data::annotate::AnnotationFormat;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else { return };
    let format = match selector % 4 {
        0 => AnnotationFormat::LabelStudio,
        1 => AnnotationFormat::Coco,
        2 => AnnotationFormat::Conll,
        _ => AnnotationFormat::Spans,
    };
    let _ = cloister_data::internal::import_annotations(format, "fuzz", bytes, "fuzzer");
});
