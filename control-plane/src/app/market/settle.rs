//! Settlement of a sealed-bid auction of identical units: uniform-price,
//! multi-unit, second-price. A pure function; `trade::settle` applies its
//! outcome to the ledger and the leases in one transaction.
//!
//! The rule (`docs/marketplace.md` has a worked example):
//! 1. Bids below the reserve take no part.
//! 2. The others are ranked by price (highest first), then time (earliest
//!    first), then id (lowest first): a total order, so the outcome never
//!    depends on the order bids are read in.
//! 3. Units go down the ranking: a bid gets all it asks for if that many
//!    units are left; otherwise an all-or-nothing bid gets none (and the
//!    next bids may still fit), and any other bid gets what is left.
//! 4. Every winner pays the same price per unit: the highest losing unit
//!    price at or below the lowest winning bid, or the reserve if that is
//!    higher. A losing unit is one a bid asked for and did not get. The cap
//!    at the lowest winning bid matters only when an all-or-nothing bid
//!    that did not fit ranks above a winner: its price never makes a
//!    winner pay more than it bid.
//!
//! With one unit per bid this is the Vickrey (second-price) auction, and
//! for unit demand every winner pays the (K+1)-th highest bid.

/// A sealed bid as settlement sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedBid {
    /// Bid id (the last tie-break).
    pub id: i64,
    /// Units asked for (> 0).
    pub quantity: i64,
    /// Highest price per unit.
    pub max: i64,
    /// All of `quantity` or nothing.
    pub all_or_nothing: bool,
    /// When it was placed (the second tie-break).
    pub at: i64,
}

/// The outcome: the clearing price and the units of each winning bid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Price per unit every winner pays (`None`: no winner).
    pub price: Option<i64>,
    /// (bid id, units won), in ranking order; every other bid lost.
    pub awards: Vec<(i64, i64)>,
}

impl Outcome {
    /// Units won by bid `id` (0: lost).
    pub fn won(&self, id: i64) -> i64 {
        self.awards.iter().find(|(b, _)| *b == id).map_or(0, |(_, n)| *n)
    }
}

/// The bids that take part, in ranking order.
pub fn rank(reserve: i64, bids: &[SealedBid]) -> Vec<SealedBid> {
    let mut ranked: Vec<SealedBid> = bids.iter().copied().filter(|b| b.max >= reserve && b.quantity > 0).collect();
    ranked.sort_by(|a, b| b.max.cmp(&a.max).then(a.at.cmp(&b.at)).then(a.id.cmp(&b.id)));
    ranked
}

/// Settles `units` identical units with `reserve` among `bids`.
pub fn settle(units: i64, reserve: i64, bids: &[SealedBid]) -> Outcome {
    let ranked = rank(reserve, bids);
    let mut left = units.max(0);
    let mut awards = Vec::new();
    // (price, units) a bid asked for and did not get.
    let mut losing: Vec<i64> = Vec::new();
    for b in &ranked {
        let got = if b.quantity <= left {
            b.quantity
        } else if b.all_or_nothing {
            0
        } else {
            left
        };
        left -= got;
        if got > 0 {
            awards.push((b.id, got));
        }
        if got < b.quantity {
            losing.push(b.max);
        }
    }
    let Some(lowest_winner) =
        awards.iter().filter_map(|(id, _)| ranked.iter().find(|b| b.id == *id)).map(|b| b.max).min()
    else {
        return Outcome { price: None, awards };
    };
    let second = losing.into_iter().filter(|p| *p <= lowest_winner).max().unwrap_or(reserve);
    Outcome { price: Some(second.max(reserve)), awards }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bid(id: i64, quantity: i64, max: i64, aon: bool, at: i64) -> SealedBid {
        SealedBid { id, quantity, max, all_or_nothing: aon, at }
    }

    #[test]
    fn single_unit_is_vickrey() {
        let o = settle(1, 10, &[bid(1, 1, 50, false, 0), bid(2, 1, 40, false, 0), bid(3, 1, 30, false, 0)]);
        assert_eq!(o, Outcome { price: Some(40), awards: vec![(1, 1)] });
        // Alone above the reserve: pays the reserve.
        assert_eq!(settle(1, 10, &[bid(1, 1, 50, false, 0), bid(2, 1, 5, false, 0)]).price, Some(10));
        // Nobody at the reserve: no sale.
        assert_eq!(settle(1, 60, &[bid(1, 1, 50, false, 0)]), Outcome { price: None, awards: vec![] });
    }

    #[test]
    fn the_worked_example_of_the_docs() {
        // 4 nodes, reserve 100. A wants 2 at 300, B 1 at 250, C 2 at 200
        // all-or-nothing, D 1 at 150, E 1 at 90 (below the reserve).
        let bids = [
            bid(1, 2, 300, false, 0),
            bid(2, 1, 250, false, 0),
            bid(3, 2, 200, true, 0),
            bid(4, 1, 150, false, 0),
            bid(5, 1, 90, false, 0),
        ];
        let o = settle(4, 100, &bids);
        // A 2, B 1, C does not fit (1 left) and wants all, D takes the last one.
        assert_eq!(o.awards, vec![(1, 2), (2, 1), (4, 1)]);
        // The highest losing bid at or below D's 150: none (C's 200 is above), so the reserve.
        assert_eq!(o.price, Some(100));
        // Without D the lowest winner is B (250): C's 200 is below it and sets the price.
        let o = settle(4, 100, &bids[..3]);
        assert_eq!(o.awards, vec![(1, 2), (2, 1)]);
        assert_eq!(o.price, Some(200));
    }

    #[test]
    fn ties_break_by_time_then_id_whatever_the_input_order() {
        let a = bid(7, 1, 100, false, 5);
        let b = bid(3, 1, 100, false, 5);
        let c = bid(1, 1, 100, false, 9);
        for bids in [[a, b, c], [c, b, a], [b, c, a]] {
            let o = settle(1, 10, &bids);
            assert_eq!(o.awards, vec![(3, 1)], "same price and time: the lower id wins");
            assert_eq!(o.price, Some(100));
        }
    }

    #[test]
    fn partial_fill_sets_the_price_at_its_own_bid() {
        let o = settle(3, 10, &[bid(1, 2, 80, false, 0), bid(2, 2, 60, false, 1)]);
        assert_eq!(o.awards, vec![(1, 2), (2, 1)]);
        assert_eq!(o.price, Some(60));
    }

    /// The reference: every feasible allocation (each bid 0..=quantity,
    /// all-or-nothing 0 or all, below-reserve 0, total <= units) and the
    /// lexicographically greatest in ranking order; the price from the
    /// units expanded one by one.
    fn brute_force(units: i64, reserve: i64, bids: &[SealedBid]) -> Outcome {
        let ranked = rank(reserve, bids);
        let mut best: Option<Vec<i64>> = None;
        let mut alloc = vec![0i64; ranked.len()];
        fn walk(i: usize, left: i64, ranked: &[SealedBid], alloc: &mut Vec<i64>, best: &mut Option<Vec<i64>>) {
            if i == ranked.len() {
                if best.as_ref().is_none_or(|b| alloc.as_slice() > b.as_slice()) {
                    *best = Some(alloc.clone());
                }
                return;
            }
            let choices: Vec<i64> =
                if ranked[i].all_or_nothing { vec![0, ranked[i].quantity] } else { (0..=ranked[i].quantity).collect() };
            for n in choices {
                if n <= left {
                    alloc[i] = n;
                    walk(i + 1, left - n, ranked, alloc, best);
                }
            }
            alloc[i] = 0;
        }
        walk(0, units, &ranked, &mut alloc, &mut best);
        let best = best.unwrap_or_default();
        let awards: Vec<(i64, i64)> =
            ranked.iter().zip(&best).filter(|(_, n)| **n > 0).map(|(b, n)| (b.id, *n)).collect();
        if awards.is_empty() {
            return Outcome { price: None, awards };
        }
        let lowest = ranked.iter().zip(&best).filter(|(_, n)| **n > 0).map(|(b, _)| b.max).min().unwrap();
        let mut unit_prices_lost = Vec::new();
        for (b, n) in ranked.iter().zip(&best) {
            for _ in *n..b.quantity {
                unit_prices_lost.push(b.max);
            }
        }
        let p = unit_prices_lost.into_iter().filter(|p| *p <= lowest).max().unwrap_or(reserve).max(reserve);
        Outcome { price: Some(p), awards }
    }

    fn bids_strategy() -> impl Strategy<Value = (i64, i64, Vec<SealedBid>)> {
        (
            0i64..6,
            1i64..60,
            prop::collection::vec((1i64..4, 1i64..100, any::<bool>(), 0i64..4), 0..7).prop_map(|v| {
                v.into_iter()
                    .enumerate()
                    .map(|(i, (q, m, aon, at))| bid(i as i64 + 1, q, m, aon, at))
                    .collect::<Vec<_>>()
            }),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn settlement_matches_the_brute_force_reference((units, reserve, bids) in bids_strategy()) {
            let o = settle(units, reserve, &bids);
            prop_assert_eq!(&o, &brute_force(units, reserve, &bids));
            // Never more units than there are; winners pay at most their bid and at least the reserve.
            prop_assert!(o.awards.iter().map(|(_, n)| n).sum::<i64>() <= units);
            for (id, n) in &o.awards {
                let b = bids.iter().find(|b| b.id == *id).unwrap();
                prop_assert!(*n <= b.quantity && (!b.all_or_nothing || *n == b.quantity));
                prop_assert!(o.price.unwrap() <= b.max && o.price.unwrap() >= reserve);
            }
            // The order the bids come in does not matter.
            let mut rev = bids.clone();
            rev.reverse();
            prop_assert_eq!(settle(units, reserve, &rev), o);
        }
    }
}
