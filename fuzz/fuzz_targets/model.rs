//! A model file as `kiln` reads it: loaded from its bytes, then one call (a prediction or a
//! sample). Any outcome but a panic that leaves the library is fine: a panic inside tract is
//! returned as `Error::Internal` (the hook below keeps it from aborting first, as `kiln`'s does).
#![no_main]

use kiln_infer::{LoadOptions, Model};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    match kiln_infer::load_bytes(data, "fuzz.onnx", &LoadOptions::default()) {
        Ok(Model::NextWord(m)) => {
            let word = m.vocab().word(m.vocab().len().saturating_sub(1)).to_string();
            let _ = m.predict(&word, 3);
        }
        Ok(Model::Generator(g)) => {
            let _ = g.sample(2, 0);
        }
        Err(_) => {}
    }
});
