//! Market analytics (`GET /v1/market/stats`): clearing prices per resource
//! class and hour, utilization, fill rate, time to fill, owner revenue.
//! Computed from the offers, leases and ledger on each request.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::records::resources;
use crate::app::AppState;
use crate::app::error::{Error, Result};
use crate::authz::Caller;
use crate::db;

/// Prices of one resource class in one hour.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PricePoint {
    /// Resource class, e.g. `16c-64g-2d`.
    pub class: String,
    /// Start of the hour the leases were sold in, unix seconds.
    pub hour: i64,
    /// Leases sold.
    pub leases: i64,
    /// Lowest price, milli-credits per node-hour.
    pub min_mph: i64,
    /// Mean price.
    pub mean_mph: i64,
    /// Highest price.
    pub max_mph: i64,
}

/// How much of the offered time was leased in one hour.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UsePoint {
    /// Start of the hour, unix seconds.
    pub hour: i64,
    /// Node-seconds offered in it (up to now).
    pub offered_node_secs: i64,
    /// Node-seconds leased in it (up to now).
    pub leased_node_secs: i64,
}

/// Most hours in [`Stats::hourly`] (a week).
pub const MAX_HOURS: i64 = 168;

/// An owner's earnings.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Revenue {
    /// Owning project.
    pub project: String,
    /// Milli-credits received for leases.
    pub revenue: i64,
}

/// `GET /v1/market/stats`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Stats {
    /// Prices by class and hour, oldest first.
    pub prices: Vec<PricePoint>,
    /// Node-seconds leased over node-seconds offered (all offers), 0..1.
    pub utilization: f64,
    /// Offers with at least one lease over offers that are over (settled, withdrawn, or past their end), 0..1.
    pub fill_rate: f64,
    /// Mean seconds from an offer's creation to its first lease.
    pub mean_time_to_fill_secs: f64,
    /// Offers open now.
    pub open_offers: i64,
    /// Leases live now (scheduled to revoking).
    pub live_leases: i64,
    /// Earnings of the owners the caller may see (admins: all).
    pub revenue: Vec<Revenue>,
    /// Offered and leased node-seconds per hour, oldest first: from the
    /// first offer's start to now, at most the last [`MAX_HOURS`].
    pub hourly: Vec<UsePoint>,
}

/// Seconds of `[a, b)` inside `[lo, hi)`.
fn overlap(a: i64, b: i64, lo: i64, hi: i64) -> i64 {
    (b.min(hi) - a.max(lo)).max(0)
}

/// The hourly series over `offered` and `leased` (node count, `[start, end)`).
fn hourly(offered: &[(i64, i64, i64)], leased: &[(i64, i64)], now: i64) -> Vec<UsePoint> {
    let Some(first) = offered.iter().map(|o| o.1).min() else { return Vec::new() };
    let this_hour = now - now.rem_euclid(3600);
    let from = (first - first.rem_euclid(3600)).max(this_hour - (MAX_HOURS - 1) * 3600);
    (0..)
        .map(|i| from + i * 3600)
        .take_while(|h| *h <= this_hour)
        .map(|h| {
            let hi = (h + 3600).min(now);
            UsePoint {
                hour: h,
                offered_node_secs: offered.iter().map(|(n, a, b)| n * overlap(*a, *b, h, hi)).sum(),
                leased_node_secs: leased.iter().map(|(a, b)| overlap(*a, *b, h, hi)).sum(),
            }
        })
        .collect()
}

/// The market's numbers; revenue only of the caller's projects (admins: all).
pub async fn stats(st: &AppState, c: &Caller) -> Result<Stats> {
    if c.user.is_none() {
        return Err(Error::Unauthenticated);
    }
    let now = db::market::now_pool(&st.db.pool, st.db.backend).await?;
    let offers = db::market::offers::list(&st.db.pool, "").await?;
    let leases = db::market::leases::list(&st.db.pool, "").await?;
    let mut class_of = BTreeMap::new();
    let mut offered = 0i128;
    let mut offered_spans = Vec::new();
    let mut leased_spans = Vec::new();
    let (mut over, mut filled, mut ttf_sum, mut ttf_n, mut open) = (0i64, 0i64, 0i64, 0i64, 0i64);
    for o in &offers {
        class_of.insert(o.id, resources(o).map(|r| r.class()).unwrap_or_default());
        let n = db::market::offers::nodes(&st.db.pool, o.id).await?.len() as i128;
        offered += n * i128::from(o.end_at - o.start_at);
        offered_spans.push((n as i64, o.start_at, o.end_at));
        let first = leases.iter().filter(|l| l.offer == o.id).map(|l| l.created_at).min();
        if o.state == "open" && o.end_at > now {
            open += 1;
        } else {
            over += 1;
            filled += i64::from(first.is_some());
        }
        if let Some(t) = first {
            ttf_sum += t - o.created_at;
            ttf_n += 1;
        }
    }
    let mut leased = 0i128;
    let mut points: BTreeMap<(i64, String), Vec<i64>> = BTreeMap::new();
    let mut live = 0;
    for l in &leases {
        if matches!(l.state.as_str(), "cancelled") {
            continue;
        }
        live += i64::from(l.state != "ended" && l.state != "recalled" && l.state != "failed");
        leased += i128::from(l.end_at - l.start_at);
        // Time really held: up to the early end of a recalled or ended
        // lease; none for a lease that failed.
        match l.state.as_str() {
            "failed" => {}
            "ended" | "recalled" => leased_spans.push((l.start_at, l.end_at.min(l.updated_at))),
            _ => leased_spans.push((l.start_at, l.end_at)),
        }
        let class = class_of.get(&l.offer).cloned().unwrap_or_default();
        points.entry((l.created_at - l.created_at.rem_euclid(3600), class)).or_default().push(l.price_mph);
    }
    let prices = points
        .into_iter()
        .map(|((hour, class), p)| PricePoint {
            class,
            hour,
            leases: p.len() as i64,
            min_mph: p.iter().copied().min().unwrap_or(0),
            mean_mph: p.iter().sum::<i64>() / p.len().max(1) as i64,
            max_mph: p.iter().copied().max().unwrap_or(0),
        })
        .collect();
    let revenue: Vec<Revenue> = db::market::ledger::revenue(&st.db.pool)
        .await?
        .into_iter()
        .filter(|(project, _)| c.has_project(project))
        .map(|(project, revenue)| Revenue { project, revenue })
        .collect();
    let ratio = |a: i128, b: i128| if b > 0 { a as f64 / b as f64 } else { 0.0 };
    Ok(Stats {
        prices,
        utilization: ratio(leased, offered),
        fill_rate: ratio(i128::from(filled), i128::from(over)),
        mean_time_to_fill_secs: ratio(i128::from(ttf_sum), i128::from(ttf_n)),
        open_offers: open,
        live_leases: live,
        revenue,
        hourly: hourly(&offered_spans, &leased_spans, now),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hourly_counts_only_time_up_to_now_inside_each_hour() {
        let h0 = 500_000 * 3600;
        // Two nodes offered from 30 minutes into h0 for two hours; one leased for 45 minutes from h0+3600.
        let offered = [(2, h0 + 1800, h0 + 1800 + 7200)];
        let leased = [(h0 + 3600, h0 + 3600 + 2700)];
        let now = h0 + 3600 + 3000;
        let s = hourly(&offered, &leased, now);
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].hour, s[0].offered_node_secs, s[0].leased_node_secs), (h0, 2 * 1800, 0));
        assert_eq!((s[1].hour, s[1].offered_node_secs, s[1].leased_node_secs), (h0 + 3600, 2 * 3000, 2700));
        assert!(hourly(&[], &leased, now).is_empty());
        // A month-old offer: only the last week.
        let long = hourly(&[(1, h0 - 30 * 86_400, now)], &[], now);
        assert_eq!(long.len() as i64, MAX_HOURS);
        assert_eq!(long.last().unwrap().hour, h0 + 3600);
    }
}
