//! Encoding and checked decoding of single chunks. Every reader of chunk data
//! (verify, extract, the multicast receiver) goes through [`decode_chunk`], so
//! no byte reaches an output before its BLAKE3 hash matched the manifest.

use crate::error::{BundleError, Result};
use crate::manifest::Manifest;

/// A chunk ready to be stored.
#[derive(Debug)]
pub struct EncodedChunk {
    /// The bytes to store (zstd frame, or the raw input).
    pub data: Vec<u8>,
    /// True when `data` is the raw input (zstd did not help).
    pub raw: bool,
    /// BLAKE3 of the uncompressed input.
    pub hash: [u8; 32],
}

/// True when every byte is zero.
pub fn is_zero(buf: &[u8]) -> bool {
    let words = buf.chunks_exact(16);
    let tail = words.remainder();
    words.fold(0u128, |acc, w| acc | u128::from_ne_bytes(w.try_into().expect("16 bytes"))) == 0
        && tail.iter().all(|&b| b == 0)
}

/// Compresses and hashes one chunk. Keeps the raw bytes when zstd would not
/// make them smaller, so a stored chunk is never larger than its input.
pub fn encode_chunk(input: &[u8], compressor: &mut zstd::bulk::Compressor<'_>) -> std::io::Result<EncodedChunk> {
    let hash = *blake3::hash(input).as_bytes();
    let compressed = compressor.compress(input)?;
    if compressed.len() < input.len() {
        Ok(EncodedChunk { data: compressed, raw: false, hash })
    } else {
        Ok(EncodedChunk { data: input.to_vec(), raw: true, hash })
    }
}

/// Decodes stored chunk `index` into `out` (cleared first) and checks its
/// length and hash against the manifest. On error `out` holds nothing usable
/// and the error names the chunk, its part and offset.
pub fn decode_chunk(
    m: &Manifest,
    index: usize,
    stored: &[u8],
    decompressor: &mut zstd::bulk::Decompressor<'_>,
    out: &mut Vec<u8>,
) -> Result<()> {
    if check_or_decode_chunk(m, index, stored, decompressor, out)? {
        out.extend_from_slice(stored);
    }
    Ok(())
}

/// Like [`decode_chunk`], without copying a chunk stored raw: returns `true`
/// when the chunk is raw and `stored` itself is its checked data (`out`
/// cleared), `false` when the checked data was decompressed into `out`.
pub fn check_or_decode_chunk(
    m: &Manifest,
    index: usize,
    stored: &[u8],
    decompressor: &mut zstd::bulk::Decompressor<'_>,
    out: &mut Vec<u8>,
) -> Result<bool> {
    let corrupt = |reason: String| {
        let (part, off) = m.locate(index).map(|(p, o)| (p.name.clone(), o)).unwrap_or_default();
        BundleError::CorruptChunk { index, part, part_offset: off, reason }
    };
    let c = m.chunks.get(index).ok_or_else(|| corrupt("no such chunk".into()))?;
    let want_hash = m.chunk_hash(index)?.ok_or_else(|| corrupt("chunk is a hole, it has no data".into()))?;
    if stored.len() != c.stored as usize {
        return Err(corrupt(format!("{} stored bytes, manifest says {}", stored.len(), c.stored)));
    }
    out.clear();
    let data = if c.raw {
        stored
    } else {
        out.reserve(c.len as usize);
        let n = decompressor.decompress_to_buffer(stored, out).map_err(|e| corrupt(format!("zstd: {e}")))?;
        if n != c.len as usize {
            out.clear();
            return Err(corrupt(format!("decompresses to {n} bytes, manifest says {}", c.len)));
        }
        &out[..]
    };
    if blake3::hash(data).as_bytes() != &want_hash {
        out.clear();
        return Err(corrupt("BLAKE3 hash does not match the manifest".into()));
    }
    Ok(c.raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_detection() {
        let mut v = vec![0u8; 4099];
        assert!(is_zero(&v));
        assert!(is_zero(&v[1..]));
        v[4098] = 1;
        assert!(!is_zero(&v));
        assert!(!is_zero(&v[3..]));
        assert!(is_zero(&[]));
    }

    #[test]
    fn incompressible_input_is_kept_raw() {
        let mut c = zstd::bulk::Compressor::new(3).unwrap();
        let mut input = vec![0u8; 70_000];
        getrandom::fill(&mut input).unwrap();
        let e = encode_chunk(&input, &mut c).unwrap();
        assert!(e.raw);
        assert_eq!(e.data, input);
        let e = encode_chunk(&vec![5u8; 70_000], &mut c).unwrap();
        assert!(!e.raw && e.data.len() < 1000);
    }
}
