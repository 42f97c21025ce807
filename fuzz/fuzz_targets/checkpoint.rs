//! A `kiln-train` checkpoint (safetensors with kiln's JSON), read as `--resume` reads it, then
//! made into tensors.
#![no_main]

use kiln_train::checkpoint;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for kind in [checkpoint::NEXT_WORD, checkpoint::GAN] {
        if let Ok(parsed) = checkpoint::parse(data, kind, "fuzz.safetensors") {
            drop(parsed.into_loaded());
        }
    }
});
