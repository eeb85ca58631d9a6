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
//! about K + 30 rows, intermediate symbols) that costs about as much as
//! 15 * K multiply-adds whatever `e`. The system is solvable exactly when the
//! received symbols determine the block, so this decoder fails (and the
//! receiver asks for one more symbol) only when a full decode would too.

use std::collections::HashMap;

use raptorq::{ObjectTransmissionInformation, SourceBlockEncoder};

use crate::gf256;
use crate::session::SYMBOL_ALIGNMENT;

/// Use [`FewErasures`] for at most this many missing source symbols; a full
/// RaptorQ decode is cheaper beyond. Measured with `examples/rx_profile.rs`
/// (one core): a full decode of a 1 MiB block costs about 1.9 ms (K = 118,
/// T = 8928) to 2.5 ms (K = 737, T = 1424) whatever the loss; this decoder
/// about 0.05 ms resp. 0.1 ms per missing symbol.
pub const MAX_FAST_ERASURES: usize = 20;

/// The sender computes a burst of at most this many repair symbols of a
/// block as coefficient rows times source symbols (`n * K` multiply-adds)
/// rather than building a RaptorQ encoder for it (intermediate symbols: about
/// as costly as a full decode).
pub const MAX_DIRECT_REPAIRS: u32 = 16;

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
        let mut column = vec![0u8; esis.len()];
        for (i, s) in block.chunks_exact(t).take(data_symbols as usize).enumerate() {
            column.iter_mut().zip(&rows).for_each(|(c, r)| *c = r[i]);
            gf256::mul_add_rows(out, s, &column);
        }
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
        // Pick e repair symbols whose coefficients over the missing columns are independent.
        let mut basis: Vec<(Vec<u8>, usize)> = Vec::with_capacity(e);
        let mut chosen = Vec::with_capacity(e);
        for (j, (esi, _)) in repairs.iter().enumerate() {
            let row = self.row(*esi);
            let mut v: Vec<u8> = missing.iter().map(|&m| row[m as usize]).collect();
            for (b, p) in &basis {
                let f = v[*p];
                if f != 0 {
                    for (x, y) in v.iter_mut().zip(b) {
                        *x ^= gf256::mul(f, *y);
                    }
                }
            }
            if let Some(p) = v.iter().position(|&x| x != 0) {
                let s = gf256::inv(v[p]);
                v.iter_mut().for_each(|x| *x = gf256::mul(s, *x));
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
        let mut a: Vec<Vec<u8>> = Vec::with_capacity(e);
        for &j in &chosen {
            let row = self.row(repairs[j].0);
            a.push(missing.iter().map(|&m| row[m as usize]).collect());
        }
        let Some(ainv) = invert(a) else { return false };
        // Syndromes: y_j = r_j - sum over known source symbols (reads each source symbol once).
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
        let mut column = vec![0u8; e];
        for i in (0..data_symbols as usize).filter(|&i| known[i]) {
            column.iter_mut().zip(&rows).for_each(|(c, r)| *c = r[i]);
            gf256::mul_add_rows(&mut self.scratch, &block[i * t..(i + 1) * t], &column);
        }
        // x_m = sum_q ainv[m][q] * y_q, straight into the block.
        for (mcol, &m) in missing.iter().enumerate() {
            let dst = &mut block[m as usize * t..(m as usize + 1) * t];
            dst.fill(0);
            for (q, y) in self.scratch.chunks_exact(t).enumerate() {
                gf256::mul_add(dst, y, ainv[mcol][q]);
            }
        }
        true
    }
}

/// The inverse of a square matrix over GF(2^8), if it has one.
fn invert(mut a: Vec<Vec<u8>>) -> Option<Vec<Vec<u8>>> {
    let n = a.len();
    let mut inv: Vec<Vec<u8>> = (0..n).map(|i| (0..n).map(|j| u8::from(i == j)).collect()).collect();
    for col in 0..n {
        let piv = (col..n).find(|&r| a[r][col] != 0)?;
        a.swap(col, piv);
        inv.swap(col, piv);
        let s = gf256::inv(a[col][col]);
        for x in 0..n {
            a[col][x] = gf256::mul(s, a[col][x]);
            inv[col][x] = gf256::mul(s, inv[col][x]);
        }
        for r in 0..n {
            let f = a[r][col];
            if r != col && f != 0 {
                for x in 0..n {
                    let (ac, ic) = (a[col][x], inv[col][x]);
                    a[r][x] ^= gf256::mul(f, ac);
                    inv[r][x] ^= gf256::mul(f, ic);
                }
            }
        }
    }
    Some(inv)
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
        for (k, data_symbols, t) in [(118u32, 118u32, 64usize), (37, 30, 40), (737, 737, 16)] {
            let orig = block(k, data_symbols, t);
            let oti = ObjectTransmissionInformation::new((k as usize * t) as u64, t as u16, 1, 1, 8);
            let enc = SourceBlockEncoder::new(0, &oti, &orig);
            let mut dec = FewErasures::new(k);
            for e in [1usize, 2, 5, 12] {
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
