//! The market's stored columns read back (wipe, audience, resources) and
//! the one outcome several use cases share (a bid loses). Below `offers`,
//! `trade` and `leases`, which all use it; it uses none of them.

use super::filter::Resources;
use crate::app::AppState;
use crate::app::error::{Error, Result};
use crate::app::reclaim::WipeSpec;
use crate::db::market::bids::BidRow;
use crate::db::market::ledger::Memo;
use crate::db::market::offers::OfferRow;
use crate::db::{self, Tx};

/// The wipe column.
pub(crate) fn wipe_of(s: &str) -> WipeSpec {
    match s {
        "discard" => WipeSpec::Discard,
        "zero" => WipeSpec::Zero,
        _ => WipeSpec::None,
    }
}

/// The wipe column of `w`.
pub(crate) fn wipe_str(w: WipeSpec) -> &'static str {
    match w {
        WipeSpec::None => "none",
        WipeSpec::Discard => "discard",
        WipeSpec::Zero => "zero",
    }
}

/// The audience column: projects that may buy (empty: all).
pub(crate) fn audience(o: &OfferRow) -> Vec<String> {
    serde_json::from_str(&o.audience).unwrap_or_default()
}

/// The resources column: one unit's resources.
pub(crate) fn resources(o: &OfferRow) -> Result<Resources> {
    serde_json::from_str(&o.resources).map_err(Error::internal)
}

/// A bid loses: it is closed and its hold released.
pub(crate) async fn lose(st: &AppState, tx: &mut Tx<'_>, now: i64, b: &BidRow, why: &str) -> Result<()> {
    if db::market::bids::finish(tx, b.id, "lost", 0, None).await? {
        let reference = format!("bid {}", b.id);
        let m = Memo { kind: "release", reference: &reference, actor: "market", memo: why, now };
        db::market::ledger::close_hold(tx, b.hold, m).await?;
        let row = crate::app::events::new_row(
            "",
            Some(&b.project),
            "bid-lost",
            &format!("bid {} on offer {}: {why}", b.id, b.offer),
        );
        db::events::insert(&mut **tx, &row).await?;
        st.metrics.market("bid_lost");
    }
    Ok(())
}
