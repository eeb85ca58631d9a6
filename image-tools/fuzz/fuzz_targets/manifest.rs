#![no_main]
//! Standalone signed manifests and raw manifest JSON from arbitrary bytes.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = metalcast_image::SignedManifest::from_bytes(data);
    let _ = metalcast_image::Manifest::from_json(data);
});
