//! Trading: buy-now, sealed bids, and the settlement of an auction.
//!
//! Buy-now takes the offer's row lock (PostgreSQL; SQLite's one writer
//! serializes every write transaction), picks free nodes, opens one escrow
//! hold per lease and inserts the leases, all in the request's
//! transaction; the exclusion constraint on live leases catches anything
//! the check missed. A bid holds quantity x max price x hours in escrow
//! until settlement; settlement runs exactly once per auction (the offer's
//! `open -> settled` compare-and-set), pays the winners' leases at the
//! clearing price into new holds and releases everything else.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::leases::{Lease, lease_view};
use super::records::{audience, lose};
use super::settle::{SealedBid, settle};
use super::{check_price, check_units, cost, insufficient, overlap};
use crate::app::AppState;
use crate::app::error::{Error, Result};
use crate::authz::{Action, Actor, Caller, Resource, authorize};
use crate::db::market::bids::BidRow;
use crate::db::market::leases::{LeaseRow, LeaseState};
use crate::db::market::ledger::Memo;
use crate::db::market::offers::OfferRow;
use crate::db::{self, Tx};

/// `POST /v1/market/offers/{id}/buy`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BuyRequest {
    /// The buying project.
    pub project: String,
    /// Nodes to buy (default 1).
    #[serde(default = "one")]
    pub quantity: i64,
    /// Lease start, unix seconds (default and at the earliest: now, or the offer's start).
    #[serde(default)]
    pub start: Option<i64>,
    /// Lease end, unix seconds, exclusive (default: the offer's end).
    #[serde(default)]
    pub end: Option<i64>,
}

fn one() -> i64 {
    1
}

/// `POST /v1/market/offers/{id}/bids`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BidCreate {
    /// The bidding project.
    pub project: String,
    /// Nodes wanted (default 1).
    #[serde(default = "one")]
    pub quantity: i64,
    /// Highest price, milli-credits per node-hour (at least the reserve).
    pub max_mph: i64,
    /// All of `quantity` or none.
    #[serde(default)]
    pub all_or_nothing: bool,
}

/// A sealed bid.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Bid {
    /// Id.
    pub id: i64,
    /// The auctioned offer.
    pub offer: i64,
    /// Bidding project.
    pub project: String,
    /// Nodes wanted.
    pub quantity: i64,
    /// Highest price, milli-credits per node-hour.
    pub max_mph: i64,
    /// All or nothing.
    pub all_or_nothing: bool,
    /// open | won | lost | withdrawn.
    pub state: String,
    /// Nodes won.
    pub won: i64,
    /// The clearing price paid, milli-credits per node-hour (winners).
    pub price_mph: Option<i64>,
    /// Milli-credits held in escrow while open.
    pub held: i64,
    /// Unix seconds.
    pub created_at: i64,
}

fn bid_view(b: BidRow, held: i64) -> Bid {
    Bid {
        id: b.id,
        offer: b.offer,
        project: b.project,
        quantity: b.quantity,
        max_mph: b.max_mph,
        all_or_nothing: b.all_or_nothing == 1,
        state: b.state,
        won: b.won,
        price_mph: b.price_mph,
        held,
        created_at: b.created_at,
    }
}

async fn offer(tx: &mut Tx<'_>, id: i64) -> Result<OfferRow> {
    db::market::offers::get_tx(tx, id).await?.ok_or_else(|| Error::NotFound(format!("offer {id} does not exist")))
}

/// Creates one lease of `node` for `lessee` paid by a new hold of `amount`
/// (or by `hold` when given: a hold carved out of another).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn new_lease(
    st: &AppState,
    tx: &mut Tx<'_>,
    now: i64,
    o: &OfferRow,
    node: &str,
    lessee: &str,
    window: (i64, i64),
    price: i64,
    origin: (Option<i64>, Option<i64>),
    hold: Option<i64>,
) -> Result<LeaseRow> {
    let (start, end) = window;
    let id = db::market::next_id(tx, "lease").await?;
    let reference = format!("lease {id}");
    let hold = match hold {
        Some(h) => h,
        None => {
            let m = Memo { kind: "hold", reference: &reference, actor: "market", memo: "lease payment held", now };
            db::market::ledger::open_hold(tx, lessee, cost(price, end - start), m).await?.map_err(insufficient)?
        }
    };
    let gap = st.market.config.cleaning_gap_secs;
    if db::market::leases::overlaps(tx, node, start, end + gap, 0).await? {
        return Err(Error::Conflict(format!("node {node:?} is already leased for part of [{start}, {end})")));
    }
    let row = LeaseRow {
        id,
        offer: o.id,
        node: node.into(),
        owner: o.owner.clone(),
        lessee: lessee.into(),
        start_at: start,
        end_at: end,
        busy_until: end + gap,
        price_mph: price,
        hold,
        interruptible: o.interruptible,
        notice_secs: o.notice_secs.min(end - start),
        wipe: o.wipe.clone(),
        state: LeaseState::Scheduled.as_str().into(),
        recalled: 0,
        attempts: 0,
        reason: String::new(),
        bid: origin.0,
        autobuy: origin.1,
        created_at: now,
        updated_at: now,
    };
    overlap(db::market::leases::insert(tx, &row).await, || {
        format!("node {node:?} is already leased for part of [{start}, {end})")
    })?;
    st.metrics.market("lease_scheduled");
    Ok(row)
}

/// Buys nodes of an offer at its buy-now price (members of the buying project).
pub async fn buy(
    st: &AppState,
    c: &Caller,
    tx: &mut Tx<'static>,
    now: i64,
    id: i64,
    req: BuyRequest,
) -> Result<Vec<Lease>> {
    crate::app::error::check_name("project", &req.project)?;
    check_units("quantity", req.quantity)?;
    let o = offer(tx, id).await?;
    let aud = audience(&o);
    authorize(Actor::Caller(c), Action::Buy(&req.project), Resource::Offer { owner: &o.owner, audience: &aud })?;
    if !db::projects::exists_tx(tx, &req.project).await? {
        return Err(Error::not_found("project", &req.project));
    }
    let Some(price) = o.buy_now_mph else {
        return Err(Error::Conflict(format!("offer {id} has no buy-now price: bid for it")));
    };
    let start = req.start.unwrap_or(o.start_at).max(o.start_at).max(now);
    let end = req.end.unwrap_or(o.end_at);
    super::check_window(start, end, now)?;
    if end > o.end_at {
        return Err(Error::BadRequest(format!("the lease would end at {end}, after its offer ({})", o.end_at)));
    }
    if !db::market::offers::lock(tx, id, "open").await? {
        return Err(Error::Conflict(format!("offer {id} is {}", o.state)));
    }
    let gap = st.market.config.cleaning_gap_secs;
    let free = db::market::offers::free_nodes(tx, id, start, end + gap).await?;
    if (free.len() as i64) < req.quantity {
        return Err(Error::Conflict(format!(
            "only {} of offer {id}'s nodes are free for [{start}, {end}), {} asked for",
            free.len(),
            req.quantity
        )));
    }
    db::market::ledger::ensure_accounts(tx, &req.project).await?;
    let mut out = Vec::new();
    for node in free.iter().take(req.quantity as usize) {
        let l = new_lease(st, tx, now, &o, node, &req.project, (start, end), price, (None, None), None).await?;
        out.push(lease_view(l, now));
    }
    tracing::info!(offer = id, buyer = %req.project, n = out.len(), "market buy-now");
    Ok(out)
}

/// Places a sealed bid (members of the bidding project), holding its maximum in escrow.
pub async fn bid(
    st: &AppState,
    c: &Caller,
    user: &str,
    tx: &mut Tx<'static>,
    now: i64,
    id: i64,
    req: BidCreate,
) -> Result<Bid> {
    crate::app::error::check_name("project", &req.project)?;
    check_units("quantity", req.quantity)?;
    check_price("max_mph", req.max_mph)?;
    let o = offer(tx, id).await?;
    let aud = audience(&o);
    authorize(Actor::Caller(c), Action::Buy(&req.project), Resource::Offer { owner: &o.owner, audience: &aud })?;
    if !db::projects::exists_tx(tx, &req.project).await? {
        return Err(Error::not_found("project", &req.project));
    }
    let Some(closes) = o.closes_at else {
        return Err(Error::Conflict(format!("offer {id} is not an auction: buy it now")));
    };
    if o.state != "open" || closes <= now {
        return Err(Error::Conflict(format!("bidding on offer {id} closed at {closes}")));
    }
    let units = db::market::offers::nodes(&mut **tx, id).await?.len() as i64;
    if req.quantity > units {
        return Err(Error::Unprocessable(format!("offer {id} has {units} nodes; {} asked for", req.quantity)));
    }
    if req.max_mph < o.reserve_mph {
        return Err(Error::Unprocessable(format!(
            "the bid {} is below offer {id}'s reserve price {} (milli-credits per node-hour)",
            req.max_mph, o.reserve_mph
        )));
    }
    db::market::ledger::ensure_accounts(tx, &req.project).await?;
    let bid_id = db::market::next_id(tx, "bid").await?;
    let reference = format!("bid {bid_id}");
    let amount = cost(req.max_mph, o.end_at - o.start_at.max(now)).saturating_mul(req.quantity);
    let m = Memo { kind: "hold", reference: &reference, actor: user, memo: "bid held until the auction settles", now };
    let hold = db::market::ledger::open_hold(tx, &req.project, amount, m).await?.map_err(insufficient)?;
    let row = BidRow {
        id: bid_id,
        offer: id,
        project: req.project,
        quantity: req.quantity,
        max_mph: req.max_mph,
        all_or_nothing: i64::from(req.all_or_nothing),
        hold,
        state: "open".into(),
        won: 0,
        price_mph: None,
        created_by: user.into(),
        created_at: now,
    };
    db::market::bids::insert(tx, &row).await?;
    st.metrics.market("bid_placed");
    Ok(bid_view(row, amount))
}

/// Bids the caller may see: its projects' (admins: all); of one offer if
/// `offer` > 0 (the offer's owner sees its bids after settlement).
pub async fn list_bids(st: &AppState, c: &Caller, offer: i64) -> Result<Vec<Bid>> {
    if c.user.is_none() {
        return Err(Error::Unauthenticated);
    }
    let mut out = Vec::new();
    for b in db::market::bids::list(&st.db.pool, "", offer).await? {
        let mine = c.has_project(&b.project);
        let owner_after = b.state != "open"
            && db::market::offers::get(&st.db.pool, b.offer).await?.is_some_and(|o| c.has_project(&o.owner));
        if mine || owner_after {
            let held = db::market::ledger::held(&st.db.pool, b.hold).await?;
            out.push(bid_view(b, held));
        }
    }
    Ok(out)
}

/// Withdraws an open bid before its auction closes (members of the bidding project).
pub async fn withdraw_bid(st: &AppState, c: &Caller, tx: &mut Tx<'static>, now: i64, id: i64) -> Result<Bid> {
    let b =
        db::market::bids::get_tx(tx, id).await?.ok_or_else(|| Error::NotFound(format!("bid {id} does not exist")))?;
    c.require_project(Some(&b.project)).map_err(|_| Error::NotFound(format!("bid {id} does not exist")))?;
    let o = offer(tx, b.offer).await?;
    if b.state != "open" || o.closes_at.is_none_or(|t| t <= now) {
        return Err(Error::Conflict(format!("bid {id} is {} and its auction closes at {:?}", b.state, o.closes_at)));
    }
    if db::market::bids::finish(tx, id, "withdrawn", 0, None).await? {
        st.metrics.market("bid_withdrawn");
        let reference = format!("bid {id}");
        let m = Memo { kind: "release", reference: &reference, actor: "market", memo: "bid withdrawn", now };
        db::market::ledger::close_hold(tx, b.hold, m).await?;
    }
    let b = db::market::bids::get_tx(tx, id).await?.ok_or_else(|| Error::internal("bid vanished"))?;
    Ok(bid_view(b, 0))
}

/// The result of settling an auction.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Settlement {
    /// The offer.
    pub offer: i64,
    /// Clearing price, milli-credits per node-hour (`null`: nothing sold).
    pub price_mph: Option<i64>,
    /// The bids, with their outcome.
    pub bids: Vec<Bid>,
    /// The leases made.
    pub leases: Vec<Lease>,
}

/// Settles an auction whose close time has passed, now (its owner, or admins).
pub async fn settle_now(st: &AppState, c: &Caller, tx: &mut Tx<'static>, now: i64, id: i64) -> Result<Settlement> {
    let o = offer(tx, id).await?;
    let aud = audience(&o);
    authorize(Actor::Caller(c), Action::ManageOffer, Resource::Offer { owner: &o.owner, audience: &aud })?;
    settle_auction(st, tx, now, id).await
}

/// Settles auction `id` (the driver, at its close): exactly once.
pub async fn settle_auction(st: &AppState, tx: &mut Tx<'_>, now: i64, id: i64) -> Result<Settlement> {
    let o = offer(tx, id).await?;
    let Some(closes) = o.closes_at else {
        return Err(Error::Conflict(format!("offer {id} is not an auction")));
    };
    if closes > now {
        return Err(Error::Conflict(format!("the auction of offer {id} closes at {closes}; it is {now}")));
    }
    // The compare-and-set that makes settlement happen once.
    if !db::market::offers::set_state(tx, id, "open", "settled").await? {
        return Err(Error::Conflict(format!("offer {id} is {}: settled once already, or withdrawn", o.state)));
    }
    let bids = db::market::bids::open_of_offer(tx, id).await?;
    let start = o.start_at.max(now);
    let end = o.end_at;
    let gap = st.market.config.cleaning_gap_secs;
    let free = if start < end { db::market::offers::free_nodes(tx, id, start, end + gap).await? } else { vec![] };
    let sealed: Vec<SealedBid> = bids
        .iter()
        .map(|b| SealedBid {
            id: b.id,
            quantity: b.quantity,
            max: b.max_mph,
            all_or_nothing: b.all_or_nothing == 1,
            at: b.created_at,
        })
        .collect();
    let outcome = settle(free.len() as i64, o.reserve_mph, &sealed);
    // Nodes go to the winners in ranking order; the ledger work then runs
    // in project order, so two settlements lock accounts in one order.
    let mut nodes = free.iter();
    let mut plan: Vec<(&BidRow, Vec<String>)> = Vec::new();
    for (bid_id, n) in &outcome.awards {
        let b = bids.iter().find(|b| b.id == *bid_id).ok_or_else(|| Error::internal("award of an unknown bid"))?;
        plan.push((b, nodes.by_ref().take(*n as usize).cloned().collect()));
    }
    let mut order: Vec<&BidRow> = bids.iter().collect();
    order.sort_by(|a, b| a.project.cmp(&b.project).then(a.id.cmp(&b.id)));
    let mut leases = Vec::new();
    let mut views = Vec::new();
    for b in order {
        let mut after = b.clone();
        match (plan.iter().find(|(p, _)| p.id == b.id), outcome.price) {
            (Some((_, won)), Some(price)) => {
                let reference = format!("bid {}", b.id);
                let m = Memo { kind: "release", reference: &reference, actor: "market", memo: "auction settled", now };
                db::market::ledger::close_hold(tx, b.hold, m).await?;
                for node in won {
                    let l = new_lease(st, tx, now, &o, node, &b.project, (start, end), price, (Some(b.id), None), None)
                        .await?;
                    leases.push(lease_view(l, now));
                }
                db::market::bids::finish(tx, b.id, "won", won.len() as i64, Some(price)).await?;
                let msg = format!(
                    "bid {} won {} node(s) of offer {id} at {price} milli-credits per node-hour",
                    b.id,
                    won.len()
                );
                let row = crate::app::events::new_row(&won[0], Some(&b.project), "bid-won", &msg);
                db::events::insert(&mut **tx, &row).await?;
                st.metrics.market("bid_won");
                (after.state, after.won, after.price_mph) = ("won".into(), won.len() as i64, Some(price));
            }
            _ => {
                lose(st, tx, now, b, "outbid or below what was left at settlement").await?;
                after.state = "lost".into();
            }
        }
        views.push(bid_view(after, 0));
    }
    views.sort_by_key(|b| b.id);
    st.metrics.market("settled");
    tracing::info!(offer = id, price = ?outcome.price, winners = outcome.awards.len(), bids = bids.len(), "auction settled");
    Ok(Settlement { offer: id, price_mph: outcome.price, bids: views, leases })
}
