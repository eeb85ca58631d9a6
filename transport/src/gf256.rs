//! Arithmetic in GF(2^8) with RaptorQ's polynomial (RFC 6330 section 5.7:
//! x^8 + x^4 + x^3 + x^2 + 1), and the one bulk operation the few-erasure
//! decoder needs: `dst ^= c * src` over a whole symbol, with AVX2 (nibble
//! table lookups, 32 bytes per step) where the CPU has it.

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
    assert_eq!(dst.len(), src.len());
    match c {
        0 => {}
        1 => xor(dst, src),
        _ => {
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2 (checked just above); lengths are equal (asserted).
                unsafe { mul_add_avx2(dst, src, c) };
                return;
            }
            mul_add_scalar(dst, src, c);
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
    let t: [u8; 256] = std::array::from_fn(|x| mul(c, x as u8));
    for (d, s) in dst.iter_mut().zip(src) {
        *d ^= t[*s as usize];
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn mul_add_avx2(dst: &mut [u8], src: &[u8], c: u8) {
    use std::arch::x86_64::*;
    let tables = &NIBBLES[c as usize];
    let n = dst.len() / 32 * 32;
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
    mul_add_scalar(&mut dst[n..], &src[n..], c);
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
    fn bulk_matches_scalar() {
        let src: Vec<u8> = (0..1000u32).map(|i| (i * 7919 % 251) as u8).collect();
        for c in [0u8, 1, 2, 29, 200, 255] {
            let mut a: Vec<u8> = (0..1000u32).map(|i| (i % 13) as u8).collect();
            let mut b = a.clone();
            mul_add(&mut a, &src, c);
            for (d, s) in b.iter_mut().zip(&src) {
                *d ^= mul(c, *s);
            }
            assert_eq!(a, b, "c = {c}");
        }
    }
}
