//! Which receivers' repair may wait: a receiver whose link loses far more
//! than the others' (a lossy outlier), and one that joined after the first
//! pass began (a late joiner). Their large needs are served after the first
//! pass, and only when no other receiver's need is due, so they do not set
//! everyone's pace (`docs/wire-protocol.md`, "Outliers and late joiners").
//!
//! The sender measures each receiver's loss from its reports alone (packets
//! received against the highest sequence number processed, since its first
//! report while receiving), and compares it with the **upper median** of all
//! receivers' losses: a receiver is a lossy outlier if its loss exceeds
//! `median + max(2 * median, 5 percentage points)` ([`loss_threshold`]).
//! The upper median makes outliers a minority by construction.

/// Packets a receiver's reports must cover before its loss counts.
pub const MIN_PACKETS: u64 = 4096;
/// Fewest receivers with a loss measure for anyone to be a lossy outlier.
pub const MIN_RECEIVERS: usize = 3;
/// The smallest margin above the median loss that makes an outlier.
pub const MIN_MARGIN: f64 = 0.05;
/// The threshold never exceeds this (a need cap must stay finite).
pub const MAX_THRESHOLD: f64 = 0.95;

/// Why a receiver's large needs wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutlierKind {
    /// Its loss is far above the median receiver's.
    Lossy,
    /// It was not hearing the group when the first pass began.
    Late,
}

/// One receiver's loss since its first report while receiving, from the
/// cumulative counts every report carries.
#[derive(Debug, Clone, Default)]
pub struct LossMeter {
    /// `(max_seq, received)` of the first report while receiving.
    base: Option<(u64, u64)>,
    loss: Option<f64>,
}

impl LossMeter {
    /// Takes a report's highest processed sequence number and packets received.
    pub fn update(&mut self, max_seq: u64, received: u64) {
        let (s0, r0) = *self.base.get_or_insert((max_seq, received));
        let span = max_seq.saturating_sub(s0);
        if span >= MIN_PACKETS {
            let got = received.saturating_sub(r0).min(span);
            self.loss = Some(1.0 - got as f64 / span as f64);
        }
    }

    /// The loss measured so far, once reports cover [`MIN_PACKETS`].
    pub fn loss(&self) -> Option<f64> {
        self.loss
    }
}

/// The loss above which a receiver is a lossy outlier, given the losses of
/// every receiver measured so far (reordered in place); `None` with fewer
/// than [`MIN_RECEIVERS`]. The threshold is the upper median plus the larger
/// of twice the median and [`MIN_MARGIN`], at most [`MAX_THRESHOLD`]: at
/// 1% median loss, 6%; at 5%, 15%; with no loss, 5%.
pub fn loss_threshold(losses: &mut [f64]) -> Option<f64> {
    if losses.len() < MIN_RECEIVERS {
        return None;
    }
    losses.sort_by(f64::total_cmp);
    let median = losses[losses.len() / 2];
    Some((median + (2.0 * median).max(MIN_MARGIN)).min(MAX_THRESHOLD))
}

/// The largest need for a block of `k` source symbols that a flagged
/// receiver gets served during the first pass: what a receiver losing
/// `threshold` of its packets asks for (its need inflated for its loss, as
/// receivers do), plus one. Larger needs wait.
pub fn need_cap(k: u32, threshold: f64) -> u32 {
    let t = threshold.clamp(0.0, MAX_THRESHOLD);
    (f64::from(k) * t / (1.0 - t)).ceil() as u32 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_lossy_link_among_eight_is_an_outlier_and_healthy_spread_is_not() {
        let mut l = [0.010, 0.012, 0.008, 0.30, 0.011, 0.009, 0.010, 0.013];
        let t = loss_threshold(&mut l).unwrap();
        assert!((0.05..0.07).contains(&t), "{t}");
        assert!(0.30 > t && 0.013 < t);
        // Bursty but healthy (a few percent) is not an outlier.
        let mut l = [0.024, 0.03, 0.02, 0.045, 0.025, 0.022];
        assert!(loss_threshold(&mut l).unwrap() > 0.045 + 0.02);
        // Everyone lossy: the bar rises with the median.
        let mut l = [0.3, 0.3, 0.31, 0.29];
        assert!(loss_threshold(&mut l).unwrap() > 0.85);
    }

    #[test]
    fn outliers_are_a_minority_and_need_enough_receivers() {
        assert_eq!(loss_threshold(&mut [0.0, 0.5]), None);
        // Half the receivers lossy: the upper median is a lossy one, so none is an outlier.
        let mut l = [0.01, 0.01, 0.3, 0.3];
        let t = loss_threshold(&mut l).unwrap();
        assert!(l.iter().all(|&x| x <= t), "{t}");
        let mut l = [0.01, 0.01, 0.01, 0.3];
        assert!(0.3 > loss_threshold(&mut l).unwrap());
    }

    #[test]
    fn loss_meter_starts_at_the_first_report_and_waits_for_enough_packets() {
        let mut m = LossMeter::default();
        // Joined late: sequence numbers before its first report are not losses.
        m.update(100_000, 10);
        m.update(100_000 + MIN_PACKETS / 2, 10 + MIN_PACKETS / 2);
        assert_eq!(m.loss(), None);
        m.update(110_000, 10 + 7_000);
        assert!((m.loss().unwrap() - 0.3).abs() < 1e-9);
    }

    #[test]
    fn the_need_cap_is_what_a_receiver_at_the_threshold_asks() {
        // 737 symbols at 6%: 47 missing, inflated to 48, plus one.
        assert_eq!(need_cap(737, 0.06), 49);
        // A 30% receiver asks for about 316 of 737: above the cap.
        assert!(need_cap(737, 0.06) < 316);
        assert!(need_cap(737, 2.0) < u32::MAX);
    }
}
