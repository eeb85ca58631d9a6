#![no_main]
//! Whole bundles from arbitrary bytes: header, manifest, chunk decoding.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = metalcast_image::reader::check_in_memory(data);
});
