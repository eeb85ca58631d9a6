//! The marketplace: owners offer time on their nodes, others buy it at once
//! or bid for it; a lease really moves the node to the lessee and back,
//! paid through a double-entry credits ledger. `docs/marketplace.md`
//! describes the model, the state machines, the settlement rule and the
//! invariants.
//!
//! One file per concept: [`offers`], [`trade`] (buy-now, bids, auction
//! settlement), [`settle`] (the settlement rule, pure), [`leases`] (their
//! state machine: grant, notice, revoke, cancel, recall, extend),
//! [`ledger`] (mint, transfers, reversals, accounts), [`autobuy`],
//! [`stats`], [`filter`] (resource filters), [`records`] (stored columns
//! read back, a bid losing), and [`driver`], the
//! background task that closes auctions and moves leases along.
//!
//! Every mutating request runs through [`execute`]: one write transaction
//! that claims the caller's `Idempotency-Key`, applies the operation,
//! stores its answer and commits, so a repeat returns the first answer
//! and the effect happens at most once.

pub mod autobuy;
pub mod driver;
pub mod filter;
pub mod leases;
pub mod ledger;
pub mod offers;
pub mod records;
pub mod settle;
pub mod stats;
pub mod trade;

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::{Error, Result};
use crate::authz::Caller;
use crate::db::market::ledger::Insufficient;
use crate::db::{self, Tx};

/// The market's settings (`serve --market-*`).
#[derive(Debug, Clone)]
pub struct MarketConfig {
    /// How often the driver looks for work.
    pub tick: Duration,
    /// Seconds between the end of a lease and the start of the next one on
    /// the same node (the reclaim and wipe run in it).
    pub cleaning_gap_secs: i64,
    /// The market's fee on every payment, in basis points (1/100 %).
    pub fee_bps: i64,
    /// Failed grant or revoke attempts before a lease fails.
    pub attempts: i64,
    /// How long a revoke waits for the node's runtime (kexec or BMC).
    pub revoke_timeout: Duration,
}

impl Default for MarketConfig {
    fn default() -> Self {
        MarketConfig {
            tick: Duration::from_secs(2),
            cleaning_gap_secs: 300,
            fee_bps: 0,
            attempts: 5,
            revoke_timeout: Duration::from_secs(300),
        }
    }
}

/// The market's settings and the leases this process is revoking now.
#[derive(Debug, Default)]
pub struct Market {
    /// Settings.
    pub config: MarketConfig,
    /// Leases whose revoke runs in this process (never twice at once).
    pub(crate) revoking: Mutex<HashSet<i64>>,
}

/// The highest price accepted, milli-credits per node-hour (a million credits).
pub const MAX_PRICE: i64 = 1_000_000_000;
/// The longest window accepted (a leap year).
pub const MAX_WINDOW_SECS: i64 = 366 * 86_400;
/// Most nodes in one offer, bid or purchase.
pub const MAX_UNITS: i64 = 1000;

/// What `price` per node-hour costs for `secs` seconds, rounded up to the
/// milli-credit.
pub fn cost(price_mph: i64, secs: i64) -> i64 {
    let c = (i128::from(price_mph) * i128::from(secs.max(0)) + 3599) / 3600;
    i64::try_from(c).unwrap_or(i64::MAX)
}

/// The fee of `amount` at `bps` basis points, rounded down.
pub fn fee(amount: i64, bps: i64) -> i64 {
    i64::try_from(i128::from(amount) * i128::from(bps) / 10_000).unwrap_or(0)
}

/// A mutating market or ledger request. Its JSON (with the path's ids) is
/// what an `Idempotency-Key` is bound to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// `POST /v1/market/offers`.
    CreateOffer(offers::OfferCreate),
    /// `DELETE /v1/market/offers/{id}`.
    WithdrawOffer {
        /// Offer.
        offer: i64,
    },
    /// `POST /v1/market/offers/{id}/buy`.
    Buy {
        /// Offer.
        offer: i64,
        /// What to buy.
        req: trade::BuyRequest,
    },
    /// `POST /v1/market/offers/{id}/bids`.
    Bid {
        /// Offer.
        offer: i64,
        /// The bid.
        req: trade::BidCreate,
    },
    /// `DELETE /v1/market/bids/{id}`.
    WithdrawBid {
        /// Bid.
        bid: i64,
    },
    /// `POST /v1/market/offers/{id}/settle`.
    Settle {
        /// Offer.
        offer: i64,
    },
    /// `DELETE /v1/market/leases/{id}`.
    CancelLease {
        /// Lease.
        lease: i64,
    },
    /// `POST /v1/market/leases/{id}/recall`.
    RecallLease {
        /// Lease.
        lease: i64,
    },
    /// `POST /v1/market/leases/{id}/extend`.
    ExtendLease {
        /// Lease.
        lease: i64,
        /// New end.
        req: leases::Extend,
    },
    /// `POST /v1/ledger/mint`.
    Mint(ledger::Mint),
    /// `POST /v1/ledger/transfers`.
    Transfer(ledger::TransferCreate),
    /// `POST /v1/ledger/transfers/{id}/reverse`.
    Reverse {
        /// Transfer.
        transfer: i64,
    },
    /// `POST /v1/market/autobuy`.
    CreateAutobuy(autobuy::AutobuyCreate),
    /// `DELETE /v1/market/autobuy/{id}`.
    DeleteAutobuy {
        /// Rule.
        rule: i64,
    },
}

/// The answer to a mutating request: status and JSON body, and whether it
/// is the stored answer of an earlier request with the same key.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: serde_json::Value,
    /// A repeat: the first answer, nothing done again.
    pub replayed: bool,
}

/// Longest accepted `Idempotency-Key`.
pub const MAX_KEY_LEN: usize = 255;

/// Runs `op` for `c` at most once per `Idempotency-Key` (required): a repeat
/// with the same key and the same request returns the first answer; with a
/// different request, a 409. The key is bound to the user.
pub async fn execute(st: &AppState, c: &Caller, key: Option<&str>, op: Op) -> Result<Answer> {
    let user = c.user.clone().ok_or(Error::Unauthenticated)?;
    let key = key.ok_or_else(|| {
        Error::BadRequest("an Idempotency-Key header is required on every mutating market and ledger request".into())
    })?;
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::BadRequest(format!(
            "Idempotency-Key must be 1-{MAX_KEY_LEN} printable ASCII characters without spaces"
        )));
    }
    let hash = blake3::hash(&serde_json::to_vec(&op).map_err(Error::internal)?).to_hex().to_string();
    if let Some(a) = replay(st, &user, key, &hash).await? {
        return Ok(a);
    }
    // A nested instance asks its parent about an offer's nodes before the
    // transaction opens (never an HTTP call while holding the writer).
    let parent = match &op {
        Op::CreateOffer(req) => offers::ask_parent(st, &req.nodes).await?,
        _ => offers::Parent::default(),
    };
    let mut tx = st.db.writer.begin().await?;
    let now = db::market::now(&mut tx, st.db.backend).await?;
    if !db::market::idempotency::claim(&mut tx, &user, key, &hash, now).await? {
        // A concurrent request with the same key committed first.
        tx.rollback().await?;
        return replay(st, &user, key, &hash).await?.ok_or_else(|| Error::internal("idempotency key vanished"));
    }
    let (status, body) = apply(st, c, &user, &mut tx, now, op, &parent).await?;
    let text = serde_json::to_string(&body).map_err(Error::internal)?;
    db::market::idempotency::answer(&mut tx, &user, key, i64::from(status), &text).await?;
    tx.commit().await?;
    st.metrics.market("request");
    Ok(Answer { status, body, replayed: false })
}

async fn replay(st: &AppState, user: &str, key: &str, hash: &str) -> Result<Option<Answer>> {
    let Some((h, status, body)) = db::market::idempotency::get(&st.db.pool, user, key).await? else {
        return Ok(None);
    };
    if h != hash {
        return Err(Error::Conflict(format!(
            "Idempotency-Key {key:?} was used for a different request; use a new key for a new request"
        )));
    }
    let body = serde_json::from_str(&body).map_err(Error::internal)?;
    st.metrics.market("replayed");
    Ok(Some(Answer { status: u16::try_from(status).unwrap_or(200), body, replayed: true }))
}

#[allow(clippy::too_many_arguments)]
async fn apply(
    st: &AppState,
    c: &Caller,
    user: &str,
    tx: &mut Tx<'static>,
    now: i64,
    op: Op,
    parent: &offers::Parent,
) -> Result<(u16, serde_json::Value)> {
    let json = |v: Result<serde_json::Value, serde_json::Error>| v.map_err(Error::internal);
    Ok(match op {
        Op::CreateOffer(req) => {
            (201, json(serde_json::to_value(offers::create(st, c, user, tx, now, req, parent).await?))?)
        }
        Op::WithdrawOffer { offer } => {
            (200, json(serde_json::to_value(offers::withdraw(st, c, tx, now, offer).await?))?)
        }
        Op::Buy { offer, req } => (201, json(serde_json::to_value(trade::buy(st, c, tx, now, offer, req).await?))?),
        Op::Bid { offer, req } => {
            (201, json(serde_json::to_value(trade::bid(st, c, user, tx, now, offer, req).await?))?)
        }
        Op::WithdrawBid { bid } => (200, json(serde_json::to_value(trade::withdraw_bid(st, c, tx, now, bid).await?))?),
        Op::Settle { offer } => (200, json(serde_json::to_value(trade::settle_now(st, c, tx, now, offer).await?))?),
        Op::CancelLease { lease } => (200, json(serde_json::to_value(leases::cancel(st, c, tx, now, lease).await?))?),
        Op::RecallLease { lease } => (200, json(serde_json::to_value(leases::recall(st, c, tx, now, lease).await?))?),
        Op::ExtendLease { lease, req } => {
            (200, json(serde_json::to_value(leases::extend(st, c, user, tx, now, lease, req).await?))?)
        }
        Op::Mint(req) => (201, json(serde_json::to_value(ledger::mint(c, user, tx, now, req).await?))?),
        Op::Transfer(req) => (201, json(serde_json::to_value(ledger::transfer(c, user, tx, now, req).await?))?),
        Op::Reverse { transfer } => {
            (201, json(serde_json::to_value(ledger::reverse(c, user, tx, now, transfer).await?))?)
        }
        Op::CreateAutobuy(req) => (201, json(serde_json::to_value(autobuy::create(c, user, tx, now, req).await?))?),
        Op::DeleteAutobuy { rule } => (200, json(serde_json::to_value(autobuy::delete(c, tx, now, rule).await?))?),
    })
}

/// The market's one clock (the database's), unix seconds: what windows,
/// closes and time left are measured against.
pub async fn clock(st: &AppState) -> Result<i64> {
    Ok(db::market::now_pool(&st.db.pool, st.db.backend).await?)
}

/// A ledger refusal in the caller's words.
pub(crate) fn insufficient(e: Insufficient) -> Error {
    Error::Conflict(format!(
        "not enough {} credits in project {:?}: {} milli-credits needed",
        e.kind.as_str(),
        e.project,
        e.amount
    ))
}

/// `r`, with PostgreSQL's exclusion-constraint violation (an overlapping
/// live lease or offer of a node, caught by the database) worded as `msg`.
pub(crate) fn overlap<T>(r: std::result::Result<T, sqlx::Error>, msg: impl FnOnce() -> String) -> Result<T> {
    r.map_err(|e| if db::market::is_exclusion(&e) { Error::Conflict(msg()) } else { Error::from(e) })
}

/// Checks a price in milli-credits per node-hour.
pub(crate) fn check_price(what: &str, p: i64) -> Result<()> {
    if p <= 0 || p > MAX_PRICE {
        return Err(Error::BadRequest(format!(
            "{what} must be between 1 and {MAX_PRICE} milli-credits per node-hour, not {p}"
        )));
    }
    Ok(())
}

/// Checks a quantity of nodes.
pub(crate) fn check_units(what: &str, n: i64) -> Result<()> {
    if !(1..=MAX_UNITS).contains(&n) {
        return Err(Error::BadRequest(format!("{what} must be between 1 and {MAX_UNITS}, not {n}")));
    }
    Ok(())
}

/// Checks a half-open window `[start, end)` against the database clock.
pub(crate) fn check_window(start: i64, end: i64, now: i64) -> Result<()> {
    if end <= start {
        return Err(Error::BadRequest(format!(
            "the window [{start}, {end}) is empty or reversed: end must be after start"
        )));
    }
    if end <= now {
        return Err(Error::BadRequest(format!("the window [{start}, {end}) is in the past (now is {now})")));
    }
    if end - start > MAX_WINDOW_SECS {
        return Err(Error::BadRequest(format!("a window is at most {MAX_WINDOW_SECS} seconds long")));
    }
    Ok(())
}
