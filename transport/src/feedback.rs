//! Feedback that scales with the fleet (`docs/wire-protocol.md`, "Feedback"):
//! the sender announces, per block, the repair it will send (a **plan**), and
//! a receiver whose need the plan covers stays silent; one whose need exceeds
//! it asks after a random back-off that is shorter the larger its excess, so
//! the worst few, not all, answer (each answer raises the plan, and the
//! sender announces it again at once). Every receiver also sends a status
//! report (state, counters for the rate control, all its needs) at an
//! interval the sender sets from the number of receivers, so the reports
//! arriving at the one sender stay bounded as the fleet grows.
//!
//! The formulas here are shared by the sender, the receiver and the
//! simulation in `perf/`.

use std::time::Duration;

/// Status reports the sender asks for, all receivers together, per second
/// (before the interval's bounds apply).
pub const STATUS_REPORTS_PER_SEC: f64 = 2000.0;
/// Shortest status interval the sender announces.
pub const MIN_STATUS_INTERVAL: Duration = Duration::from_millis(20);
/// Longest status interval the sender announces (well under the sender's
/// receiver timeout, 10 s by default: status reports are also the liveness signal).
pub const MAX_STATUS_INTERVAL: Duration = Duration::from_secs(1);
/// Longest back-off before a receiver asks for repair the plan does not cover.
pub const MAX_BACKOFF: Duration = Duration::from_millis(4);
/// A receiver takes an announced plan as covering its need for at most this
/// long after it heard it; then it asks anyway. A plan is normally sent
/// within the sender's gather window (6 ms) or behind one first-pass block;
/// the bound is what keeps a lost burst, a late one or a replayed plan from
/// silencing a receiver for longer.
pub const PLAN_HOLD: Duration = Duration::from_millis(100);
/// After asking for a block, a receiver asks again for it (if no plan covers
/// it meanwhile) after this long: the ask or the plan that answered it may
/// have been lost.
pub const ASK_RETRY: Duration = Duration::from_millis(20);

/// The status interval the sender announces for `receivers` receivers:
/// `receivers / 2000` seconds, between 20 ms and 1 s.
pub fn status_interval(receivers: usize) -> Duration {
    Duration::from_secs_f64(receivers as f64 / STATUS_REPORTS_PER_SEC).clamp(MIN_STATUS_INTERVAL, MAX_STATUS_INTERVAL)
}

/// The longest back-off the sender announces for `receivers` receivers:
/// half a millisecond per doubling of the group, at most [`MAX_BACKOFF`]
/// (so that every answer falls in the sender's 6 ms gather window). A lone
/// receiver answers at once.
pub fn backoff_max(receivers: usize) -> Duration {
    let doublings = (receivers.max(1) as f64).log2();
    Duration::from_secs_f64(0.5e-3 * doublings).min(MAX_BACKOFF)
}

/// A receiver's back-off before it asks for `excess` symbols beyond the plan
/// (`excess >= 1`), given a uniform `u` in [0, 1): uniform in
/// `[0, max / excess)`, so the receivers short by most tend to answer first
/// and suppress the others.
pub fn backoff(max: Duration, excess: u32, u: f64) -> Duration {
    max.mul_f64(u.clamp(0.0, 1.0) / f64::from(excess.max(1)))
}

/// Fewest receivers for which the sender predicts each block's first burst.
/// Below, the back-off alone keeps asks few (and status reports dominate:
/// at 16 receivers the prediction cut report packets only from 0.35 to 0.33
/// of version 3's), while on the fabric, 16 receivers at 5% loss behind
/// 200 Mbit/s, it made the first pass 3% longer (more, smaller bursts; the
/// cause is not understood). At 1,000 receivers without it the simulation
/// gives 0.049 of the image in reports, at 10,000 0.48; with it 0.003 and 0.023.
pub const PREDICT_MIN_RECEIVERS: usize = 64;

/// Whether the sender predicts first bursts for `receivers` receivers.
pub fn predicts(receivers: usize) -> bool {
    receivers >= PREDICT_MIN_RECEIVERS
}

/// Exceedances of the plan the predictor aims at: it rises by
/// [`PREDICT_UP`] symbols after a block whose plan someone exceeded, falls
/// by one after a block whose plan nobody did, and so settles where about
/// one block in three is exceeded (a higher step over-provisions more: 4
/// cost 0.2% more wire bytes and time at 10,000 receivers in the simulation).
pub const PREDICT_UP: u32 = 2;

/// The sender's prediction of a block's first repair burst, announced as the
/// block's plan the moment its source symbols are sent: receivers whose need
/// it covers never speak about the block. A quantile tracker over the bursts
/// of the blocks before (the largest need heard is censored by the plan
/// itself, so it moves by steps, not to what it heard).
#[derive(Debug, Clone, Default)]
pub struct Predictor {
    plan: u32,
}

impl Predictor {
    /// The plan for the next block.
    pub fn plan(&self) -> u32 {
        self.plan
    }

    /// A block's first burst was `sent` symbols, for a plan of `planned`.
    pub fn update(&mut self, planned: u32, sent: u32) {
        self.plan = if sent > planned { planned.saturating_add(PREDICT_UP) } else { planned.saturating_sub(1) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_interval_bounds_the_sum_of_status_reports() {
        assert_eq!(status_interval(1), MIN_STATUS_INTERVAL);
        assert_eq!(status_interval(16), MIN_STATUS_INTERVAL);
        assert_eq!(status_interval(1000), Duration::from_millis(500));
        assert_eq!(status_interval(10_000), MAX_STATUS_INTERVAL);
        for n in [100usize, 1000, 2000] {
            let per_sec = n as f64 / status_interval(n).as_secs_f64();
            assert!(per_sec <= STATUS_REPORTS_PER_SEC + 1e-6, "{n}: {per_sec}");
        }
    }

    #[test]
    fn backoff_is_shorter_for_larger_excess_and_fits_the_gather_window() {
        assert_eq!(backoff_max(1), Duration::ZERO);
        assert_eq!(backoff_max(16), Duration::from_millis(2));
        assert_eq!(backoff_max(10_000), MAX_BACKOFF);
        let m = backoff_max(10_000);
        assert!(backoff(m, 10, 0.99) < backoff(m, 1, 0.2));
        assert!(backoff(m, 1, 0.999_999) < MAX_BACKOFF);
        assert_eq!(backoff(m, 0, 0.5), backoff(m, 1, 0.5));
    }

    #[test]
    fn the_predictor_settles_where_the_plan_is_exceeded_now_and_then() {
        // Largest need per block: 20 +- 3, deterministic pseudo-random.
        let mut p = Predictor::default();
        let mut x = 7u64;
        let (mut exceeded, mut over) = (0, 0u64);
        for i in 0..2000 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let max_need = 17 + ((x >> 33) % 7) as u32;
            let planned = p.plan();
            let sent = planned.max(max_need);
            if i >= 200 {
                exceeded += u32::from(sent > planned);
                over += u64::from(planned.saturating_sub(max_need));
            }
            p.update(planned, sent);
        }
        let share = f64::from(exceeded) / 1800.0;
        assert!((0.2..0.45).contains(&share), "{share}");
        // Over-provisioning stays a few symbols per block.
        assert!((over as f64 / 1800.0) < 4.0, "{}", over as f64 / 1800.0);
    }
}
