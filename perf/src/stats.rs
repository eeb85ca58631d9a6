//! Repetitions and summary statistics.

use std::time::{Duration, Instant};

/// Median and spread of repeated measurements, in seconds.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    /// Median.
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
    /// Every sample, in run order.
    pub samples: Vec<f64>,
}

impl Summary {
    /// Summarises samples (seconds). Panics on an empty slice.
    pub fn of(samples: &[f64]) -> Self {
        assert!(!samples.is_empty(), "no samples");
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let median = if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 };
        Summary { median, min: s[0], max: s[n - 1], samples: samples.to_vec() }
    }

    /// Spread as a fraction of the median: (max - min) / median.
    pub fn spread(&self) -> f64 {
        (self.max - self.min) / self.median
    }
}

/// Times a closure.
pub fn time<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let r = f();
    (r, t.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_spread() {
        let s = Summary::of(&[3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(Summary::of(&[1.0, 2.0, 3.0, 10.0]).median, 2.5);
        assert!((s.spread() - 1.0).abs() < 1e-9);
    }
}
