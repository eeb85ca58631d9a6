//! What a receiver learns from the sequence numbers it hears: the range the
//! session's packets came from, for the loss estimate that inflates what it
//! asks for, across a handover to a sender that resumed the session.
//!
//! A resumed sender starts far above anything the one before it sent (more
//! than [`SEQ_SKIP`] higher): that gap is a handover, not loss, and is left
//! out of the range. A packet of the earlier sender that arrives after the
//! handover (late, or sent by an owner that was paused and has not stopped
//! yet) is still a good symbol, but it must not stretch the range back over
//! the gap, or the estimate would read as total loss; it is counted apart.

/// A jump in sequence numbers larger than this is a sender that resumed the
/// session, not loss.
pub const SEQ_SKIP: u64 = 1 << 20;

/// The sequence numbers heard so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeqRange {
    /// The first of the range (shifted up by every handover gap); `None`
    /// before the first packet.
    first: Option<u64>,
    /// The highest heard.
    max: u64,
    /// Whether a handover was seen.
    handed_over: bool,
    /// Packets from below the range after a handover (see the module docs).
    stale: u64,
}

impl SeqRange {
    /// Takes `seq` in; true when it is fresh (the first packet, or higher than any before).
    pub fn see(&mut self, seq: u64) -> bool {
        let fresh = self.first.is_none() || seq > self.max;
        if let Some(first) = self.first.as_mut()
            && seq > self.max + SEQ_SKIP
        {
            *first += seq - self.max - 1;
            self.handed_over = true;
        }
        if self.handed_over && self.first.is_some_and(|f| seq < f) {
            self.stale += 1;
        } else {
            self.first = Some(self.first.map_or(seq, |f| f.min(seq)));
        }
        self.max = self.max.max(seq);
        fresh
    }

    /// The highest sequence number heard (0 before any).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The share of the range's packets lost, given `got` packets taken in
    /// (every packet [`SeqRange::see`] took, plus any dropped on purpose),
    /// at most 0.9.
    pub fn loss(&self, got: u64) -> f64 {
        let got = got.saturating_sub(self.stale);
        match self.first {
            Some(f) if self.max > f => (1.0 - got as f64 / (self.max - f + 1) as f64).clamp(0.0, 0.9),
            _ => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heard(seqs: impl IntoIterator<Item = u64>) -> (SeqRange, u64) {
        let mut r = SeqRange::default();
        let mut n = 0;
        for s in seqs {
            r.see(s);
            n += 1;
        }
        (r, n)
    }

    #[test]
    fn loss_is_the_share_of_the_range_missing() {
        let (r, n) = heard((0..1000).filter(|s| s % 10 != 0));
        assert!((r.loss(n) - 0.1).abs() < 0.002, "{}", r.loss(n));
        let (r, n) = heard(0..1000);
        assert_eq!(r.loss(n), 0.0);
        assert_eq!(SeqRange::default().loss(0), 0.0);
    }

    #[test]
    fn a_handover_gap_is_not_loss() {
        let start = 50_000_000;
        let (r, n) = heard((0..1000).chain(start..start + 1000));
        assert!(r.loss(n) < 0.002, "{}", r.loss(n));
        assert_eq!(r.max(), start + 999);
    }

    #[test]
    fn the_earlier_senders_late_packets_do_not_read_as_total_loss() {
        let start = 50_000_000;
        // The old sender goes on for a while after the new one began (a paused owner, woken).
        let seqs = (0..1000).chain(start..start + 500).chain(1000..1200).chain(start + 500..start + 1000);
        let (r, n) = heard(seqs);
        assert!(r.loss(n) < 0.002, "{}", r.loss(n));
        // Real loss after the handover still shows.
        let seqs = (0..1000).chain(start..start + 1000).chain(1000..1100).filter(|s| s % 5 != 0);
        let (r, n) = heard(seqs);
        assert!((r.loss(n) - 0.2).abs() < 0.01, "{}", r.loss(n));
    }

    #[test]
    fn freshness_follows_the_highest_heard() {
        let mut r = SeqRange::default();
        assert!(r.see(10));
        assert!(!r.see(5), "reordered, older");
        assert!(r.see(11));
        assert!(r.see(60_000_000), "a resumed sender");
        assert!(!r.see(12), "the earlier sender, late");
    }
}
