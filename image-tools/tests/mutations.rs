//! Property test: no mutation of a bundle or a signed manifest makes the
//! parsers panic, and a mutated bundle never verifies as the original unless
//! the mutation was a no-op. (The cargo-fuzz target in `fuzz/` explores the
//! same parsers coverage-guided.)

use metalcast_image::{Bundle, SignedManifest};
use proptest::prelude::*;

fn sample_bundle() -> (tempfile::TempDir, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    std::fs::write(dir.path().join("k"), &data).unwrap();
    let mut spec =
        metalcast_image::spec_from_inputs("p", Some(dir.path().join("k")), vec![], "x".into(), None, None, None)
            .unwrap();
    spec.chunk_size = 64 * 1024;
    metalcast_image::build(&spec, &dir.path().join("b"), None, &indicatif::ProgressBar::hidden()).unwrap();
    let bytes = std::fs::read(dir.path().join("b")).unwrap();
    (dir, bytes)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]
    #[test]
    fn mutated_bundles_never_panic(edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6), cut in any::<prop::sample::Index>(), truncate in any::<bool>()) {
        let (dir, mut bytes) = sample_bundle();
        let orig = bytes.clone();
        for (i, v) in &edits {
            let at = i.index(bytes.len());
            bytes[at] = *v;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        let p = dir.path().join("m");
        std::fs::write(&p, &bytes).unwrap();
        // Whatever still verifies after the mutation must carry exactly the
        // original data: an edit of chunk data is always caught.
        if let Ok(b) = Bundle::open(&p)
            && let Ok(r) = b.verify_chunks(&indicatif::ProgressBar::hidden())
            && r.bad_chunks.is_empty()
        {
            let end = b.header.manifest_offset as usize;
            prop_assert!(end <= orig.len());
            prop_assert!(bytes[4096..end] == orig[4096..end], "mutated chunk data verified");
        }
        let _ = SignedManifest::from_bytes(&bytes);
        let _ = metalcast_image::reader::check_in_memory(&bytes);
    }
}

#[test]
fn in_memory_check_agrees_with_the_file_reader() {
    let (_dir, bytes) = sample_bundle();
    let n = metalcast_image::reader::check_in_memory(&bytes).unwrap();
    assert_eq!(n, 5, "300,000 bytes at 64 KiB chunks are 5 stored chunks");
    let mut bad = bytes.clone();
    bad[4096 + 10] ^= 1;
    assert_eq!(metalcast_image::reader::check_in_memory(&bad).unwrap(), 4);
}
