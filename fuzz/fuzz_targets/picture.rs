//! One picture of a training folder (`kiln-train gan --images DIR`): decoded, cropped and scaled
//! as the folder reader does, grey and RGB.
#![no_main]

use kiln_train::gan::data::images::decode_picture;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for channels in [1, 3] {
        let _ = decode_picture(std::io::Cursor::new(data), 16, channels);
    }
});
