//! Adaptive send rate: the sender raises its rate while no receiver reports
//! more loss than usual for it, and cuts it when one does (the algorithm is
//! specified in `docs/wire-protocol.md`, "Rate").
//!
//! Loss that is always there (a lossy link) must not slow everyone down; loss
//! that appears when the sender goes faster (socket buffers overrun because a
//! receiver cannot keep up, a saturated link) must. So each receiver's loss
//! is compared with its own floor, the lowest loss it showed in any window.

use std::time::{Duration, Instant};

/// Packets the sender must have sent since the last decision before the next.
pub const WINDOW_PACKETS: u64 = 2048;
/// And at least this much time.
pub const WINDOW_TIME: Duration = Duration::from_millis(20);

/// One receiver's loss, window by window, from its reports' cumulative
/// counts (packets received, highest sequence number processed).
#[derive(Debug, Clone, Default)]
pub struct RxLoss {
    /// `(max_seq, received)` at the start of the current window.
    win: Option<(u64, u64)>,
    /// Lowest windowed loss seen.
    floor: Option<f64>,
    /// Packets expected and lost over all closed windows (its mean loss).
    expected: u64,
    lost: u64,
    /// Windows closed, and the running mean and sum of squared deviations of
    /// their losses (Welford): how noisy this receiver's link really is.
    windows: u64,
    mean_w: f64,
    m2_w: f64,
}

impl RxLoss {
    /// Closes the receiver's window if it has news of at least half a
    /// window of packets; returns whether its loss in it was above usual:
    /// more than its floor plus the larger of 1% and the floor (twice the
    /// floor), plus a margin for a window's noise: three standard
    /// deviations of binomial sampling noise at its mean loss, or four of the
    /// spread its windows really showed if larger (bursty loss varies far
    /// more than independent loss of the same mean, with heavier tails). The
    /// floor is the minimum over many noisy windows; without that margin a
    /// steadily lossy link reads as congested in a good share of windows.
    /// `None`: no verdict yet.
    pub fn sample(&mut self, max_seq: u64, received: u64) -> Option<bool> {
        let Some((s0, r0)) = self.win else {
            self.win = Some((max_seq, received));
            return None;
        };
        let dseq = max_seq.saturating_sub(s0);
        if dseq < WINDOW_PACKETS / 2 {
            return None;
        }
        let got = received.saturating_sub(r0).min(dseq);
        let loss = 1.0 - got as f64 / dseq as f64;
        self.win = Some((max_seq, received));
        let floor = self.floor.map_or(loss, |f| f.min(loss));
        self.floor = Some(floor);
        self.expected += dseq;
        self.lost += dseq - got;
        let mean = (self.lost as f64 / self.expected as f64).max(1.0 / dseq as f64);
        let binomial = (mean * (1.0 - mean) / dseq as f64).sqrt();
        // The spread of earlier windows (not this one), once there are enough of them.
        let observed = if self.windows >= 8 { (self.m2_w / (self.windows - 1) as f64).sqrt() } else { 0.0 };
        let congested = loss > floor + floor.max(0.01) + (3.0 * binomial).max(4.0 * observed);
        self.windows += 1;
        let d = loss - self.mean_w;
        self.mean_w += d / self.windows as f64;
        self.m2_w += d * (loss - self.mean_w);
        Some(congested)
    }
}

/// The sender's rate, bytes of UDP payload per second.
#[derive(Debug, Clone)]
pub struct RateControl {
    /// Current rate.
    pub rate: f64,
    cap: f64,
    min: f64,
    slow_start: bool,
    /// After a cut: three quarters of the nominal rate before it, regrown at
    /// slow-start speed (the cut itself may have gone lower, from what a
    /// starved sender really sent).
    recover: f64,
    strikes: u32,
    hold: u32,
    last_seq: u64,
    last_bytes: u64,
    last: Instant,
    /// Highest rate reached.
    pub peak: f64,
    /// Times the rate was cut.
    pub cuts: u64,
}

impl RateControl {
    /// Starts at `start` (at most `cap`); never goes below a quarter of that.
    pub fn new(start: f64, cap: Option<f64>, now: Instant) -> Self {
        let cap = cap.unwrap_or(f64::INFINITY);
        let rate = start.min(cap);
        RateControl {
            rate,
            cap,
            min: rate / 4.0,
            slow_start: true,
            recover: 0.0,
            strikes: 0,
            hold: 0,
            last_seq: 0,
            last_bytes: 0,
            last: now,
            peak: rate,
            cuts: 0,
        }
    }

    /// Whether a window has passed (`seq`: packets sent so far).
    pub fn due(&self, seq: u64, now: Instant) -> bool {
        seq.saturating_sub(self.last_seq) >= WINDOW_PACKETS && now.duration_since(self.last) >= WINDOW_TIME
    }

    /// Decides at the end of a window (`seq`: packets sent so far, `bytes`:
    /// bytes sent so far): `verdict` is `Some(true)` if any receiver's loss
    /// was above usual, `Some(false)` if receivers reported and none was,
    /// `None` if none had news. Two congested windows in a row cut the rate
    /// to three quarters of what was really sent in the window (then two
    /// windows pass before it grows again: their reports predate the cut); a
    /// clean window raises it by 25% until the first cut, by 5% after (but by
    /// 25% again while below three quarters of the nominal rate before the
    /// last cut: a cut from a starved sender's low output is not a verdict
    /// on the network), never past twice what was really sent (a sender that
    /// cannot go faster must not bank a rate it would later have to shed).
    pub fn update(&mut self, verdict: Option<bool>, seq: u64, bytes: u64, now: Instant) {
        let secs = now.duration_since(self.last).as_secs_f64();
        let sent = bytes.saturating_sub(self.last_bytes) as f64 / secs.max(1e-3);
        self.last_seq = seq;
        self.last_bytes = bytes;
        self.last = now;
        match verdict {
            None => {}
            Some(true) => {
                self.strikes += 1;
                if self.strikes >= 2 {
                    self.strikes = 0;
                    self.recover = self.rate * 0.75;
                    self.rate = (self.rate.min(sent) * 0.75).max(self.min);
                    self.slow_start = false;
                    self.hold = 2;
                    self.cuts += 1;
                }
            }
            Some(false) => {
                self.strikes = 0;
                if self.hold > 0 {
                    self.hold -= 1;
                } else {
                    let grown = if self.slow_start {
                        self.rate * 1.25
                    } else if self.rate < self.recover {
                        (self.rate * 1.25).min(self.recover)
                    } else {
                        self.rate * 1.05
                    };
                    self.rate = grown.min(self.cap).min((2.0 * sent).max(self.rate));
                    self.peak = self.peak.max(self.rate);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_loss_is_not_congestion_but_extra_loss_is() {
        let mut r = RxLoss::default();
        assert_eq!(r.sample(0, 0), None);
        assert_eq!(r.sample(100, 99), None, "too little news");
        // 20% loss, steadily: never congestion.
        let (mut s, mut got) = (0u64, 0u64);
        for _ in 0..10 {
            s += 4000;
            got += 3200;
            assert_eq!(r.sample(s, got), Some(false));
        }
        // Then 45% in one window: more than twice the floor.
        s += 4000;
        got += 2200;
        assert_eq!(r.sample(s, got), Some(true));
        // A loss-free receiver: 2% is congestion, 0.5% is not.
        let mut q = RxLoss::default();
        q.sample(0, 0);
        assert_eq!(q.sample(4000, 4000), Some(false));
        assert_eq!(q.sample(8000, 7980), Some(false));
        assert_eq!(q.sample(12000, 11920), Some(true));
    }

    #[test]
    fn steady_random_loss_is_not_read_as_congestion() {
        // 8 receivers, 1% independent random loss, 1000 windows of 2048 packets: a
        // rule that compares each window with the lowest one seen (no noise margin)
        // flags a good share of windows and would cut the rate again and again.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut rxs = vec![RxLoss::default(); 8];
        let mut got = [0u64; 8];
        let (mut seq, mut flagged, mut verdicts) = (0u64, 0, 0);
        for r in rxs.iter_mut() {
            r.sample(0, 0);
        }
        for _ in 0..1000 {
            for (i, r) in rxs.iter_mut().enumerate() {
                got[i] += (0..WINDOW_PACKETS).filter(|_| rand() >= 0.01).count() as u64;
                verdicts += 1;
                flagged += usize::from(r.sample(seq + WINDOW_PACKETS, got[i]) == Some(true));
            }
            seq += WINDOW_PACKETS;
        }
        assert_eq!(verdicts, 8000);
        assert!(flagged <= 8, "{flagged} of 8000 receiver windows read as congested");

        // Bursty loss of the same mean (bursts of 5, as Gilbert-Elliott with p = 0.2%
        // to enter and 20% to leave): windows vary far more than binomially.
        let mut bursty = vec![RxLoss::default(); 8];
        let mut bgot = [0u64; 8];
        let mut bad = [false; 8];
        let (mut bseq, mut bflagged) = (0u64, 0);
        for r in bursty.iter_mut() {
            r.sample(0, 0);
        }
        for _ in 0..1000 {
            for (i, r) in bursty.iter_mut().enumerate() {
                for _ in 0..WINDOW_PACKETS {
                    bad[i] = if bad[i] { rand() >= 0.2 } else { rand() < 0.002 };
                    bgot[i] += u64::from(!bad[i]);
                }
                bflagged += usize::from(r.sample(bseq + WINDOW_PACKETS, bgot[i]) == Some(true));
            }
            bseq += WINDOW_PACKETS;
        }
        assert!(bflagged <= 16, "bursty: {bflagged} of 8000 receiver windows read as congested");
        // Congestion on top of it still shows: 4% in one window.
        let mut r = rxs.remove(0);
        assert_eq!(r.sample(seq + WINDOW_PACKETS, got[0] + WINDOW_PACKETS * 96 / 100), Some(true));
    }

    #[test]
    fn grows_to_the_cap_cuts_after_two_strikes_and_holds() {
        let mut t = Instant::now();
        let mut c = RateControl::new(100.0, Some(300.0), t);
        assert!(!c.due(100, t));
        assert!(c.due(WINDOW_PACKETS, t + WINDOW_TIME));
        // Each window: one second at the full current rate.
        let mut bytes = 0u64;
        let mut step = |c: &mut RateControl, v: Option<bool>| {
            t += Duration::from_secs(1);
            bytes += c.rate as u64;
            c.update(v, 0, bytes, t);
        };
        for _ in 0..20 {
            step(&mut c, Some(false));
        }
        assert_eq!(c.rate, 300.0, "capped");
        step(&mut c, Some(true));
        assert_eq!(c.rate, 300.0, "one strike is not enough");
        step(&mut c, Some(true));
        assert_eq!(c.rate, 225.0);
        step(&mut c, Some(false));
        step(&mut c, Some(false));
        assert_eq!(c.rate, 225.0, "holds two windows");
        step(&mut c, Some(false));
        assert!((c.rate - 225.0 * 1.05).abs() < 1e-6, "then grows by 5%");
        for _ in 0..40 {
            step(&mut c, Some(true));
        }
        assert_eq!(c.rate, 25.0, "never below a quarter of the start");
        assert_eq!((c.peak, c.cuts), (300.0, 21));
        step(&mut c, None);
        assert_eq!(c.rate, 25.0);
    }

    #[test]
    fn does_not_run_ahead_of_what_the_sender_achieves() {
        let t = Instant::now();
        let mut c = RateControl::new(100.0, None, t);
        // The sender manages only 50 bytes/s whatever its rate.
        for i in 1..50u64 {
            c.update(Some(false), 0, 50 * i, t + Duration::from_secs(i));
        }
        assert!(c.rate <= 125.0, "rate {} ran ahead", c.rate);
        // Congestion then cuts from what was sent, not from the nominal rate.
        c.update(Some(true), 0, 50 * 50, t + Duration::from_secs(50));
        c.update(Some(true), 0, 50 * 51, t + Duration::from_secs(51));
        assert_eq!(c.rate, 37.5, "three quarters of the 50 really sent");
    }

    #[test]
    fn regrows_fast_after_a_cut_from_a_starved_sender() {
        let mut t = Instant::now();
        let mut c = RateControl::new(400.0, None, t);
        let mut bytes = 0u64;
        // Two congested windows in which the sender (short of CPU) sent only 200 bytes/s of its 400.
        for _ in 0..2 {
            t += Duration::from_secs(1);
            bytes += 200;
            c.update(Some(true), 0, bytes, t);
        }
        assert_eq!(c.rate, 150.0, "cut from what was sent");
        // The sender keeps up again: after the two held windows, 25% a window up to 300
        // (three quarters of the 400 before the cut), then 5%.
        let mut rates = Vec::new();
        for _ in 0..12 {
            t += Duration::from_secs(1);
            bytes += c.rate as u64;
            c.update(Some(false), 0, bytes, t);
            rates.push(c.rate);
        }
        assert_eq!(&rates[..3], &[150.0, 150.0, 187.5]);
        let at_target = rates.iter().position(|&r| r == 300.0).expect("reaches 300");
        assert_eq!(at_target, 5, "{rates:?}");
        assert!((rates[at_target + 1] - 315.0).abs() < 1e-9, "then 5%: {rates:?}");
    }
}
