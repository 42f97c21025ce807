//! An IDX file (Fashion-MNIST's format), plain or gzip-compressed, as `kiln-train gan --data`
//! reads it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = kiln_train::gan::data::images::parse_idx(data);
});
