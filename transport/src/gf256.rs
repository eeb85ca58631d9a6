//! Arithmetic in GF(2^8) with RaptorQ's polynomial (RFC 6330 section 5.7:
//! x^8 + x^4 + x^3 + x^2 + 1), and the bulk operation the few-erasure
//! decoder and the sender's direct repair need: `dst ^= c * src` over whole
//! symbols, one or several destination rows per pass over `src`.
//!
//! Fastest first, picked at run time: GFNI with AVX-512 (multiplying by a
//! constant is a linear map over GF(2), so one `gf2p8affineqb` with that 8x8
//! bit matrix multiplies 64 bytes, in any field polynomial; a masked last
//! vector covers a row's tail, so symbols that are not a multiple of 64 bytes,
//! such as the 1440 bytes of a 1500-byte MTU, never fall back to scalar
//! code), GFNI with AVX2 (32 bytes), AVX2 nibble table lookups (32 bytes), a
//! scalar table.
const POLY: u16 = 0x11d;

const fn tables() -> ([u8; 512], [u8; 256]) {
    let mut exp = [0u8; 512];
    let mut log = [0u8; 256];
    let mut x: u16 = 1;
    let mut i = 0;
    while i < 255 {
        exp[i] = x as u8;
        exp[i + 255] = x as u8;
        log[x as usize] = i as u8;
        x <<= 1;
        if x & 0x100 != 0 {
            x ^= POLY;
        }
        i += 1;
    }
    (exp, log)
}

const TABLES: ([u8; 512], [u8; 256]) = tables();
static EXP: [u8; 512] = TABLES.0;
static LOG: [u8; 256] = TABLES.1;

const fn const_mul(a: u8, b: u8) -> u8 {
    if a == 0 || b == 0 {
        return 0;
    }
    TABLES.0[TABLES.1[a as usize] as usize + TABLES.1[b as usize] as usize]
}

/// Per factor `c`: `c * x` for every low nibble `x` (16 bytes), then for
/// every high nibble `x << 4` (16 bytes): the shuffle tables of the SIMD path.
static NIBBLES: [[u8; 32]; 256] = {
    let mut t = [[0u8; 32]; 256];
    let mut c = 0;
    while c < 256 {
        let mut x = 0;
        while x < 16 {
            t[c][x] = const_mul(c as u8, x as u8);
            t[c][16 + x] = const_mul(c as u8, (x as u8) << 4);
            x += 1;
        }
        c += 1;
    }
    t
};

/// Per factor `c`: the 8x8 bit matrix of `x -> c * x` in `gf2p8affineqb`'s
/// layout (byte `7 - i` holds output bit `i`'s mask over the input bits).
static AFFINE: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut c = 0;
    while c < 256 {
        let mut i = 0;
        while i < 8 {
            let mut row = 0u64;
            let mut j = 0;
            while j < 8 {
                if (const_mul(c as u8, 1 << j) >> i) & 1 != 0 {
                    row |= 1 << j;
                }
                j += 1;
            }
            t[c] |= row << (8 * (7 - i));
            i += 1;
        }
        c += 1;
    }
    t
};

/// The bulk kernels, fastest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// GFNI affine multiply on 64-byte AVX-512 vectors (AVX-512BW masks the tail).
    Gfni512,
    /// GFNI affine multiply on 32-byte AVX2 vectors.
    Gfni256,
    /// AVX2 nibble table lookups.
    Avx2,
    /// One table lookup per byte.
    Scalar,
}

impl Kernel {
    /// The fastest kernel this CPU runs.
    pub fn best() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("gfni") && has!("avx512f") && has!("avx512bw") {
                return Kernel::Gfni512;
            }
            if has!("gfni") && has!("avx2") {
                return Kernel::Gfni256;
            }
            if has!("avx2") {
                return Kernel::Avx2;
            }
        }
        Kernel::Scalar
    }

    /// Every kernel this CPU runs.
    #[cfg(test)]
    pub fn available() -> Vec<Kernel> {
        let all = [Kernel::Gfni512, Kernel::Gfni256, Kernel::Avx2, Kernel::Scalar];
        // Each kernel's CPU features include the next one's (AVX-512F implies AVX2).
        let best = all.iter().position(|k| *k == Kernel::best()).expect("best is listed");
        all[best..].to_vec()
    }
}

/// `a * b`.
pub fn mul(a: u8, b: u8) -> u8 {
    if a == 0 || b == 0 {
        return 0;
    }
    EXP[LOG[a as usize] as usize + LOG[b as usize] as usize]
}

/// The inverse of `a` (which must not be 0).
pub fn inv(a: u8) -> u8 {
    assert!(a != 0, "0 has no inverse");
    EXP[255 - LOG[a as usize] as usize]
}

/// `dst ^= c * src` (equal lengths).
pub fn mul_add(dst: &mut [u8], src: &[u8], c: u8) {
    mul_add_rows_with(Kernel::best(), dst, src.len(), src, &[c]);
}

/// `dst[q] ^= coefs[q] * src` for every row `q` of `dst` (`coefs.len()` rows
/// of `src.len()` bytes, back to back): one pass over `src` for all rows.
pub fn mul_add_rows(dst: &mut [u8], src: &[u8], coefs: &[u8]) {
    mul_add_rows_with(Kernel::best(), dst, src.len(), src, coefs);
}

/// [`mul_add_rows`] with a given kernel (which the CPU must run: see
/// [`Kernel::available`]; an unavailable one panics).
pub fn mul_add_rows_with(kernel: Kernel, dst: &mut [u8], t: usize, src: &[u8], coefs: &[u8]) {
    assert!(src.len() == t && dst.len() == coefs.len() * t, "rows of the source's length");
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Gfni512 => {
            use std::arch::is_x86_feature_detected as has;
            assert!(has!("gfni") && has!("avx512f") && has!("avx512bw"));
            // SAFETY: the CPU has GFNI, AVX-512F and AVX-512BW (asserted); row lengths are checked above.
            unsafe { rows_gfni512(dst, t, src, coefs) };
        }
        #[cfg(target_arch = "x86_64")]
        Kernel::Gfni256 => {
            assert!(std::arch::is_x86_feature_detected!("gfni") && std::arch::is_x86_feature_detected!("avx2"));
            // SAFETY: the CPU has GFNI and AVX2 (asserted); row lengths are checked above.
            let n = unsafe { rows_gfni256(dst, t, src, coefs) };
            tails(dst, t, src, coefs, n);
        }
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => {
            assert!(std::arch::is_x86_feature_detected!("avx2"));
            for (row, &c) in dst.chunks_exact_mut(t).zip(coefs) {
                // SAFETY: the CPU has AVX2 (asserted); `row` and `src` both have `t` bytes.
                let n = unsafe { mul_add_avx2(row, src, c) };
                mul_add_scalar(&mut row[n..], &src[n..], c);
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        Kernel::Gfni512 | Kernel::Gfni256 | Kernel::Avx2 => panic!("{kernel:?} needs x86_64"),
        Kernel::Scalar => {
            for (row, &c) in dst.chunks_exact_mut(t).zip(coefs) {
                mul_add_scalar(row, src, c);
            }
        }
    }
}

/// The bytes from `n` on of every row, which a vector kernel left.
fn tails(dst: &mut [u8], t: usize, src: &[u8], coefs: &[u8], n: usize) {
    if n < t {
        for (row, &c) in dst.chunks_exact_mut(t).zip(coefs) {
            mul_add_scalar(&mut row[n..], &src[n..], c);
        }
    }
}

fn xor(dst: &mut [u8], src: &[u8]) {
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (a, b) in (&mut d).zip(&mut s) {
        let v = u64::from_ne_bytes(a.try_into().expect("8 bytes")) ^ u64::from_ne_bytes(b.try_into().expect("8 bytes"));
        a.copy_from_slice(&v.to_ne_bytes());
    }
    for (a, b) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *a ^= b;
    }
}

fn mul_add_scalar(dst: &mut [u8], src: &[u8], c: u8) {
    match c {
        0 => {}
        1 => xor(dst, src),
        // A vector kernel's tail (under 64 bytes): a table would cost more than it saves.
        _ if dst.len() < 256 => {
            for (d, s) in dst.iter_mut().zip(src) {
                *d ^= mul(c, *s);
            }
        }
        _ => {
            let t: [u8; 256] = std::array::from_fn(|x| mul(c, x as u8));
            for (d, s) in dst.iter_mut().zip(src) {
                *d ^= t[*s as usize];
            }
        }
    }
}

/// Rows of `t` bytes in `dst`, one factor each, over `src` (`t` bytes), 64
/// bytes at a time, the last (partial) vector of each row under a byte mask.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,gfni")]
unsafe fn rows_gfni512(dst: &mut [u8], t: usize, src: &[u8], coefs: &[u8]) {
    use std::arch::x86_64::*;
    let n = t / 64 * 64;
    // SAFETY: the caller guarantees GFNI, AVX-512F and AVX-512BW, `src.len()
    // == t` and `dst.len() == coefs.len() * t`. Every full 64-byte load and
    // store is at offset i (source) or q * t + i (row q < coefs.len()) with
    // i + 64 <= n <= t (unaligned intrinsics); the masked ones at n touch only
    // the t - n < 64 bytes the mask selects, which lie inside the source or row.
    unsafe {
        let mut i = 0;
        while i < n {
            let s = _mm512_loadu_si512(src.as_ptr().add(i).cast());
            for (q, &c) in coefs.iter().enumerate() {
                let p = dst.as_mut_ptr().add(q * t + i);
                let a = _mm512_set1_epi64(AFFINE[c as usize] as i64);
                let d = _mm512_loadu_si512(p.cast_const().cast());
                _mm512_storeu_si512(p.cast(), _mm512_xor_si512(d, _mm512_gf2p8affine_epi64_epi8::<0>(s, a)));
            }
            i += 64;
        }
        if n < t {
            let m: __mmask64 = (1u64 << (t - n)) - 1;
            let s = _mm512_maskz_loadu_epi8(m, src.as_ptr().add(n).cast());
            for (q, &c) in coefs.iter().enumerate() {
                let p = dst.as_mut_ptr().add(q * t + n);
                let a = _mm512_set1_epi64(AFFINE[c as usize] as i64);
                let d = _mm512_maskz_loadu_epi8(m, p.cast_const().cast());
                _mm512_mask_storeu_epi8(p.cast(), m, _mm512_xor_si512(d, _mm512_gf2p8affine_epi64_epi8::<0>(s, a)));
            }
        }
    }
}

/// [`rows_gfni512`] on 32-byte AVX2 vectors.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,gfni")]
unsafe fn rows_gfni256(dst: &mut [u8], t: usize, src: &[u8], coefs: &[u8]) -> usize {
    use std::arch::x86_64::*;
    let n = t / 32 * 32;
    // SAFETY: as in rows_gfni512, with 32-byte vectors: every access is at
    // i (source) or q * t + i (row q) with i + 32 <= n <= t, and the 16-byte
    // step's at n (source) or q * t + n with n + 16 <= t.
    unsafe {
        let mut i = 0;
        while i < n {
            let s = _mm256_loadu_si256(src.as_ptr().add(i).cast());
            for (q, &c) in coefs.iter().enumerate() {
                let p = dst.as_mut_ptr().add(q * t + i);
                let a = _mm256_set1_epi64x(AFFINE[c as usize] as i64);
                let d = _mm256_loadu_si256(p.cast_const().cast());
                _mm256_storeu_si256(p.cast(), _mm256_xor_si256(d, _mm256_gf2p8affine_epi64_epi8::<0>(s, a)));
            }
            i += 32;
        }
        // A 16-byte step for the tail (1424-byte symbols end 16 bytes past a multiple of 32).
        if n + 16 <= t {
            let s = _mm_loadu_si128(src.as_ptr().add(n).cast());
            for (q, &c) in coefs.iter().enumerate() {
                let p = dst.as_mut_ptr().add(q * t + n);
                let a = _mm_set1_epi64x(AFFINE[c as usize] as i64);
                let d = _mm_loadu_si128(p.cast_const().cast());
                _mm_storeu_si128(p.cast(), _mm_xor_si128(d, _mm_gf2p8affine_epi64_epi8::<0>(s, a)));
            }
            return n + 16;
        }
    }
    n
}

/// `dst ^= c * src` 32 bytes at a time by nibble table lookups; returns how
/// many leading bytes are done.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn mul_add_avx2(dst: &mut [u8], src: &[u8], c: u8) -> usize {
    use std::arch::x86_64::*;
    let tables = &NIBBLES[c as usize];
    let n = dst.len().min(src.len()) / 32 * 32;
    // SAFETY: the caller guarantees AVX2; the two 16-byte table loads are
    // inside the 32-byte table; every 32-byte load and store is at an offset
    // i with i + 32 <= n <= the length of both slices (unaligned intrinsics).
    unsafe {
        let tlo = _mm256_broadcastsi128_si256(_mm_loadu_si128(tables.as_ptr().cast()));
        let thi = _mm256_broadcastsi128_si256(_mm_loadu_si128(tables.as_ptr().add(16).cast()));
        let mask = _mm256_set1_epi8(0x0f);
        let mut i = 0;
        while i < n {
            let s = _mm256_loadu_si256(src.as_ptr().add(i).cast());
            let d = _mm256_loadu_si256(dst.as_ptr().add(i).cast());
            let l = _mm256_shuffle_epi8(tlo, _mm256_and_si256(s, mask));
            let h = _mm256_shuffle_epi8(thi, _mm256_and_si256(_mm256_srli_epi64(s, 4), mask));
            let r = _mm256_xor_si256(d, _mm256_xor_si256(l, h));
            _mm256_storeu_si256(dst.as_mut_ptr().add(i).cast(), r);
            i += 32;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_laws_and_raptorq_table() {
        // RFC 6330's OCT_EXP starts 1, 2, 4, ..., 128, 29, 58.
        assert_eq!(&EXP[..10], &[1, 2, 4, 8, 16, 32, 64, 128, 29, 58]);
        for a in 1..=255u8 {
            assert_eq!(mul(a, inv(a)), 1, "{a}");
            assert_eq!(mul(a, 1), a);
            assert_eq!(mul(a, 0), 0);
        }
        assert_eq!(mul(3, 7), mul(7, 3));
        for c in 0..=255u8 {
            for x in 0..16u8 {
                assert_eq!(NIBBLES[c as usize][x as usize], mul(c, x));
                assert_eq!(NIBBLES[c as usize][16 + x as usize], mul(c, x << 4));
            }
        }
    }

    #[test]
    fn affine_matrices_multiply() {
        // Apply each matrix bit by bit as gf2p8affineqb does and compare with mul.
        for c in 0..=255u8 {
            let m = AFFINE[c as usize];
            for x in 0..=255u8 {
                let mut y = 0u8;
                for i in 0..8 {
                    let row = (m >> (8 * (7 - i))) as u8;
                    y |= (((row & x).count_ones() & 1) as u8) << i;
                }
                assert_eq!(y, mul(c, x), "c {c} x {x}");
            }
        }
    }

    #[test]
    fn every_kernel_matches_the_field() {
        let kernels = Kernel::available();
        assert!(kernels.contains(&Kernel::best()) && kernels.contains(&Kernel::Scalar));
        println!("kernels on this CPU: {kernels:?}");
        // Lengths around every vector width, rows from 1 to several, every kind of factor.
        for t in [1usize, 8, 31, 32, 33, 63, 64, 65, 100, 1000, 1424, 8928] {
            let src: Vec<u8> = (0..t as u32).map(|i| (i * 7919 % 251) as u8).collect();
            for coefs in [&[0u8][..], &[1], &[2], &[29, 200, 255], &[0, 1, 83, 142, 7]] {
                let init: Vec<u8> = (0..(t * coefs.len()) as u32).map(|i| (i % 13) as u8).collect();
                let mut want = init.clone();
                for (row, &c) in want.chunks_exact_mut(t).zip(coefs) {
                    for (d, s) in row.iter_mut().zip(&src) {
                        *d ^= mul(c, *s);
                    }
                }
                for &k in &kernels {
                    let mut got = init.clone();
                    mul_add_rows_with(k, &mut got, t, &src, coefs);
                    assert!(got == want, "{k:?} t {t} coefs {coefs:?}");
                }
                let mut got = init.clone();
                mul_add_rows(&mut got, &src, coefs);
                assert!(got == want);
                if coefs.len() == 1 {
                    let mut got = init.clone();
                    mul_add(&mut got, &src, coefs[0]);
                    assert!(got == want);
                }
            }
        }
    }
}
