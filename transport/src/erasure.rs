//! A cheap RaptorQ decode for blocks that lost only a few source symbols.
//!
//! RaptorQ is linear over GF(2^8), byte position by byte position: every
//! repair symbol is `r_j = sum_i m[j][i] * s_i` over the block's source
//! symbols `s_i`, with coefficients `m[j]` that depend only on K and the
//! repair symbol's ESI. Encoding the identity block (source symbol `i` is the
//! unit vector `e_i`, symbol size K) with the `raptorq` crate yields exactly
//! those coefficients, one row per repair ESI; rows are cached, and every
//! block of a session uses the same repair ESIs (each block's repairs count
//! up from the first), so a session computes only a handful.
//!
//! With `e` source symbols missing and at least `e` repair symbols, the
//! missing ones solve `y_j = r_j - sum_{i known} m[j][i] * s_i =
//! sum_{i missing} m[j][i] * s_i`: `e * K` symbol multiply-adds and an
//! `e x e` inversion, against a full RaptorQ decode (constraint matrix of
//! about K + 30 rows, intermediate symbols) that costs, whatever `e`, about
//! as much as 60 (K = 118) to 120 (K = 737) missing symbols do here. The
//! system is solvable exactly when the received symbols determine the block,
//! so this decoder fails (and the receiver asks for one more symbol) only
//! when a full decode would too.

use std::collections::HashMap;

use raptorq::{ObjectTransmissionInformation, SourceBlockEncoder};

use crate::gf256;
use crate::session::SYMBOL_ALIGNMENT;

/// Use [`FewErasures`] for at most this many missing source symbols; a full
/// RaptorQ decode is cheaper beyond. Measured with `examples/rx_profile.rs`
/// (one core, GFNI with AVX-512): a full decode of a 1 MiB block costs about
/// 1.5 ms (K = 118, T = 8928) to 2.4 ms (K = 737, T = 1424) whatever the
/// loss; this decoder about 0.02 ms per missing symbol plus 0.03 ms, so the
/// break-even lies near 60 (K = 118) and 120 (K = 737) missing symbols. 48
/// keeps a margin below both and covers most blocks even at 5% loss (37
/// missing on average at K = 737). The AVX2 nibble kernel (CPUs without
/// GFNI) is about 2.8x slower per row, which still breaks even past 48; see
/// [`fast_erasure_limit`] for CPUs with neither.
pub const MAX_FAST_ERASURES: usize = 48;

/// The most missing source symbols this CPU should recover with
/// [`FewErasures`]: [`MAX_FAST_ERASURES`] with a vector kernel; with the
/// scalar one (no AVX2: about 30x slower per row than GFNI with AVX-512) a
/// full decode is cheaper past a handful.
pub fn fast_erasure_limit() -> usize {
    match gf256::Kernel::best() {
        gf256::Kernel::Scalar => 4,
        _ => MAX_FAST_ERASURES,
    }
}

/// The sender computes a burst of at most this many repair symbols of a
/// block as coefficient rows times source symbols (`n * K` multiply-adds)
/// rather than building a RaptorQ encoder for it (intermediate symbols).
/// Measured on one core with GFNI and AVX-512: 32 repairs directly 0.48 ms
/// (K = 737, T = 1424) / 0.63 ms (K = 118, T = 8928), an encoder from the
/// cached plan plus 32 repairs 1.3 / 1.25 ms; break-even near 60 repairs.
pub const MAX_DIRECT_REPAIRS: u32 = 32;

/// Destination rows updated together in one pass over a block: at most this
/// many bytes of them, so that they stay in a 48 KiB L1 data cache next to
/// the source symbol being read. With more rows than fit, a pass per group
/// costs less than spilling every row update to L2 (measured with
/// `examples/rx_profile.rs`).
const L1_ROW_BYTES: usize = 32 << 10;

/// Repair coefficient rows for one K, and the solver.
pub struct FewErasures {
    k: u32,
    identity: Option<SourceBlockEncoder>,
    rows: HashMap<u32, Box<[u8]>>,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for FewErasures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FewErasures").field("k", &self.k).field("rows", &self.rows.len()).finish()
    }
}

impl FewErasures {
    /// For blocks of `k` source symbols (RaptorQ's K).
    pub fn new(k: u32) -> Self {
        FewErasures { k, identity: None, rows: HashMap::new(), scratch: Vec::new() }
    }

    /// The coefficients of repair symbol `esi` over the K source symbols.
    fn row(&mut self, esi: u32) -> &[u8] {
        let k = self.k as usize;
        let identity = self.identity.get_or_insert_with(|| {
            let t = k.next_multiple_of(usize::from(SYMBOL_ALIGNMENT));
            let mut data = vec![0u8; k * t];
            for i in 0..k {
                data[i * t + i] = 1;
            }
            let oti = ObjectTransmissionInformation::new((k * t) as u64, t as u16, 1, 1, SYMBOL_ALIGNMENT as u8);
            SourceBlockEncoder::new(0, &oti, &data)
        });
        self.rows.entry(esi).or_insert_with(|| {
            let p = identity.repair_packets(esi - k as u32, 1);
            debug_assert_eq!(p[0].payload_id().encoding_symbol_id(), esi);
            p[0].data()[..k].into()
        })
    }

    /// Repair symbol `esi` (at or past K) of `block` (K symbols of `t`
    /// bytes, zero from symbol `data_symbols` on), written to `out` (`t` bytes).
    pub fn repair_into(&mut self, block: &[u8], t: usize, data_symbols: u32, esi: u32, out: &mut [u8]) {
        self.repairs_into(block, t, data_symbols, &[esi], out);
    }

    /// Repair symbols `esis` (each at or past K) of `block`, back to back in
    /// `out` (`esis.len() * t` bytes), in one pass over the block.
    pub fn repairs_into(&mut self, block: &[u8], t: usize, data_symbols: u32, esis: &[u32], out: &mut [u8]) {
        assert!(
            esis.iter().all(|&e| e >= self.k)
                && out.len() == esis.len() * t
                && block.len() >= data_symbols as usize * t
        );
        out.fill(0);
        let rows: Vec<Box<[u8]>> = esis.iter().map(|&e| self.row(e).into()).collect();
        accumulate(out, &rows, block, t, &vec![true; data_symbols as usize]);
    }

    /// Fills in the `missing` source symbols of `block` (K symbols of `t`
    /// bytes; every other source symbol below `data_symbols` is in place,
    /// those from `data_symbols` on are zero) from `repairs` (ESI, symbol),
    /// ESIs at or past K. Returns false, leaving `block` unchanged, when the
    /// received symbols do not determine the missing ones.
    pub fn decode(
        &mut self,
        block: &mut [u8],
        t: usize,
        data_symbols: u32,
        missing: &[u32],
        repairs: &[(u32, Vec<u8>)],
    ) -> bool {
        let e = missing.len();
        if e == 0 {
            return true;
        }
        if repairs.len() < e
            || repairs.iter().any(|(esi, s)| *esi < self.k || s.len() != t)
            || missing.iter().any(|&m| m >= data_symbols)
            || block.len() < data_symbols as usize * t
        {
            return false;
        }
        // Pick e repair symbols whose coefficients over the missing columns are
        // independent (row operations on e-byte rows, by the bulk kernels).
        let mut basis: Vec<(Vec<u8>, usize)> = Vec::with_capacity(e);
        let mut chosen = Vec::with_capacity(e);
        for (j, (esi, _)) in repairs.iter().enumerate() {
            let row = self.row(*esi);
            let mut v: Vec<u8> = missing.iter().map(|&m| row[m as usize]).collect();
            for (b, p) in &basis {
                let f = v[*p];
                if f != 0 {
                    gf256::mul_add(&mut v, b, f);
                }
            }
            if let Some(p) = v.iter().position(|&x| x != 0) {
                let s = gf256::inv(v[p]);
                scale(&mut v, s);
                basis.push((v, p));
                chosen.push(j);
                if chosen.len() == e {
                    break;
                }
            }
        }
        if chosen.len() < e {
            return false;
        }
        // The e x e system over the missing columns, and its inverse (Gauss-Jordan).
        let mut a = Vec::with_capacity(e * e);
        for &j in &chosen {
            let row = self.row(repairs[j].0);
            a.extend(missing.iter().map(|&m| row[m as usize]));
        }
        let Some(ainv) = invert(&a, e) else { return false };
        // Syndromes: y_j = r_j - sum over known source symbols.
        self.scratch.clear();
        self.scratch.resize(e * t, 0);
        let rows: Vec<Box<[u8]>> = chosen.iter().map(|&j| self.row(repairs[j].0).into()).collect();
        for (q, &j) in chosen.iter().enumerate() {
            self.scratch[q * t..(q + 1) * t].copy_from_slice(&repairs[j].1);
        }
        let mut known = vec![true; data_symbols as usize];
        for &m in missing {
            known[m as usize] = false;
        }
        accumulate(&mut self.scratch, &rows, block, t, &known);
        // x_m = sum_q ainv[m][q] * y_q, straight into the block.
        for (mcol, &m) in missing.iter().enumerate() {
            let dst = &mut block[m as usize * t..(m as usize + 1) * t];
            dst.fill(0);
            for (q, y) in self.scratch.chunks_exact(t).enumerate() {
                gf256::mul_add(dst, y, ainv[mcol * e + q]);
            }
        }
        true
    }
}

/// `out[q] ^= sum_i rows[q][i] * s_i` over the source symbols `s_i` of
/// `block` (`t` bytes each) with `take[i]`: in passes over the block of as
/// many output rows as stay in the L1 cache together.
fn accumulate(out: &mut [u8], rows: &[Box<[u8]>], block: &[u8], t: usize, take: &[bool]) {
    let per_pass = (L1_ROW_BYTES / t).max(1);
    let mut column = vec![0u8; per_pass];
    for (ys, rows) in out.chunks_mut(per_pass * t).zip(rows.chunks(per_pass)) {
        let column = &mut column[..rows.len()];
        for i in (0..take.len()).filter(|&i| take[i]) {
            column.iter_mut().zip(rows).for_each(|(c, r)| *c = r[i]);
            gf256::mul_add_rows(ys, &block[i * t..(i + 1) * t], column);
        }
    }
}

/// `v *= c`.
fn scale(v: &mut [u8], c: u8) {
    if c != 1 {
        let x = v.to_vec();
        v.fill(0);
        gf256::mul_add(v, &x, c);
    }
}

/// The inverse of the `n x n` matrix `a` (row-major) over GF(2^8), if it has
/// one, row-major. Gauss-Jordan on `[a | I]`, one bulk row operation per step.
fn invert(a: &[u8], n: usize) -> Option<Vec<u8>> {
    let w = 2 * n;
    let mut m = vec![0u8; n * w];
    for r in 0..n {
        m[r * w..r * w + n].copy_from_slice(&a[r * n..(r + 1) * n]);
        m[r * w + n + r] = 1;
    }
    let mut pivot = vec![0u8; w];
    for col in 0..n {
        let piv = (col..n).find(|&r| m[r * w + col] != 0)?;
        if piv != col {
            for x in 0..w {
                m.swap(col * w + x, piv * w + x);
            }
        }
        let s = gf256::inv(m[col * w + col]);
        scale(&mut m[col * w..(col + 1) * w], s);
        pivot.copy_from_slice(&m[col * w..(col + 1) * w]);
        for (r, row) in m.chunks_exact_mut(w).enumerate() {
            let f = row[col];
            if r != col && f != 0 {
                gf256::mul_add(row, &pivot, f);
            }
        }
    }
    Some(m.chunks_exact(w).flat_map(|row| row[n..].iter().copied()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(k: u32, data_symbols: u32, t: usize) -> Vec<u8> {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut b: Vec<u8> = (0..k as usize * t)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        b[data_symbols as usize * t..].fill(0);
        b
    }

    #[test]
    fn recovers_missing_source_symbols_like_a_full_decode() {
        for (k, data_symbols, t) in [(118u32, 118u32, 64usize), (37, 30, 40), (737, 737, 16), (118, 100, 1424)] {
            let orig = block(k, data_symbols, t);
            let oti = ObjectTransmissionInformation::new((k as usize * t) as u64, t as u16, 1, 1, 8);
            let enc = SourceBlockEncoder::new(0, &oti, &orig);
            let mut dec = FewErasures::new(k);
            for e in [1usize, 2, 5, 12, 40] {
                let missing: Vec<u32> = (0..e as u32).map(|i| (i * 7 + 3) % data_symbols).collect();
                let mut missing = missing;
                missing.sort();
                missing.dedup();
                // Repairs from the first ESIs, as the sender sends them, plus one more than needed.
                let repairs: Vec<(u32, Vec<u8>)> = enc
                    .repair_packets(0, missing.len() as u32 + 1)
                    .into_iter()
                    .map(|p| (p.payload_id().encoding_symbol_id(), p.data().to_vec()))
                    .collect();
                let mut b = orig.clone();
                for &m in &missing {
                    b[m as usize * t..(m as usize + 1) * t].fill(0xee);
                }
                assert!(dec.decode(&mut b, t, data_symbols, &missing, &repairs), "k {k} e {e}");
                assert!(b == orig, "k {k} e {e}: wrong symbols");
                // Repair symbols computed from the rows equal the encoder's.
                let mut out = vec![0u8; t];
                for (esi, sym) in &repairs {
                    dec.repair_into(&orig, t, data_symbols, *esi, &mut out);
                    assert!(&out == sym, "k {k}: repair {esi} differs");
                }
                // And all of them in one pass.
                let esis: Vec<u32> = repairs.iter().map(|(e, _)| *e).collect();
                let mut all = vec![0u8; esis.len() * t];
                dec.repairs_into(&orig, t, data_symbols, &esis, &mut all);
                assert!(all.chunks_exact(t).zip(&repairs).all(|(a, (_, s))| a == &s[..]), "k {k}: burst differs");
                // Too few repairs: refused, block untouched.
                let mut b2 = orig.clone();
                assert!(!dec.decode(&mut b2, t, data_symbols, &missing, &repairs[..missing.len() - 1]));
                assert!(b2 == orig);
            }
        }
    }

    #[test]
    fn refuses_dependent_repairs() {
        let (k, t) = (20u32, 8usize);
        let orig = block(k, k, t);
        let oti = ObjectTransmissionInformation::new((k as usize * t) as u64, t as u16, 1, 1, 8);
        let enc = SourceBlockEncoder::new(0, &oti, &orig);
        let p = enc.repair_packets(0, 1).remove(0);
        let r = (p.payload_id().encoding_symbol_id(), p.data().to_vec());
        // The same repair symbol twice cannot recover two source symbols.
        let mut b = orig.clone();
        assert!(!FewErasures::new(k).decode(&mut b, t, k, &[1, 2], &[r.clone(), r]));
    }
}
