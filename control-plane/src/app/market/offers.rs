//! Offers: an owner project puts one node, or a pool of identical nodes,
//! on the market for a half-open window, with a reserve price, an optional
//! buy-now price, an optional sealed-bid auction, an optional audience.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::filter::{Filter, Resources};
use super::records::{audience, resources, wipe_of, wipe_str};
use super::{check_price, check_units, check_window, overlap};
use crate::app::AppState;
use crate::app::error::{Error, Result, check_name};
use crate::app::reclaim::WipeSpec;
use crate::authz::{Action, Actor, Caller, Resource, authorize};
use crate::db::market::offers::OfferRow;
use crate::db::{self, Tx};

/// `POST /v1/market/offers`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OfferCreate {
    /// The owning project; it must hold every node now.
    pub project: String,
    /// One node, or a pool of identical nodes (same resources).
    pub nodes: Vec<String>,
    /// Window start, unix seconds (inclusive; a start in the past means now).
    pub start: i64,
    /// Window end, unix seconds (exclusive).
    pub end: i64,
    /// Reserve price, milli-credits per node-hour: no sale below it.
    pub reserve_mph: i64,
    /// Buy-now price, milli-credits per node-hour (at least the reserve).
    #[serde(default)]
    pub buy_now_mph: Option<i64>,
    /// Close of a sealed-bid auction of the whole window, unix seconds (no
    /// later than the start); absent: buy-now only.
    #[serde(default)]
    pub closes_at: Option<i64>,
    /// Projects that may buy; empty: every project.
    #[serde(default)]
    pub audience: Vec<String>,
    /// The owner may recall a lease early (with `notice_secs` of notice and a pro-rata refund).
    #[serde(default)]
    pub interruptible: bool,
    /// Notice, seconds, before a lease ends or a recall takes effect.
    #[serde(default)]
    pub notice_secs: i64,
    /// Erase the disks between two leases.
    #[serde(default)]
    pub wipe: WipeSpec,
}

/// An offer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Offer {
    /// Id.
    pub id: i64,
    /// Owning project.
    pub owner: String,
    /// Its nodes.
    pub nodes: Vec<String>,
    /// Window start (inclusive), unix seconds.
    pub start: i64,
    /// Window end (exclusive), unix seconds.
    pub end: i64,
    /// Reserve price, milli-credits per node-hour.
    pub reserve_mph: i64,
    /// Buy-now price, if any.
    pub buy_now_mph: Option<i64>,
    /// Sealed bids close then (`null`: buy-now only).
    pub closes_at: Option<i64>,
    /// Projects that may buy (empty: all).
    pub audience: Vec<String>,
    /// Leases may be recalled by the owner.
    pub interruptible: bool,
    /// Notice, seconds.
    pub notice_secs: i64,
    /// Wipe between leases.
    pub wipe: WipeSpec,
    /// One unit's resources.
    pub resources: Resources,
    /// open | settled | withdrawn.
    pub state: String,
    /// Nodes free for the rest of the window now.
    pub available: i64,
    /// Unix seconds.
    pub created_at: i64,
}

/// An offer as callers see it (outside a transaction: reads the pool).
async fn view(st: &AppState, o: OfferRow, now: i64) -> Result<Offer> {
    let nodes = db::market::offers::nodes(&st.db.pool, o.id).await?;
    let available = if o.state == "open" && o.end_at > now {
        let start = o.start_at.max(now);
        let gap = st.market.config.cleaning_gap_secs;
        db::market::offers::free_count(&st.db.pool, o.id, start, o.end_at + gap).await?
    } else {
        0
    };
    offer_view(o, nodes, available)
}

fn offer_view(o: OfferRow, nodes: Vec<String>, available: i64) -> Result<Offer> {
    Ok(Offer {
        id: o.id,
        audience: audience(&o),
        resources: resources(&o)?,
        owner: o.owner,
        nodes,
        start: o.start_at,
        end: o.end_at,
        reserve_mph: o.reserve_mph,
        buy_now_mph: o.buy_now_mph,
        closes_at: o.closes_at,
        interruptible: o.interruptible == 1,
        notice_secs: o.notice_secs,
        wipe: wipe_of(&o.wipe),
        state: o.state,
        available,
        created_at: o.created_at,
    })
}

/// The resources of a node with NICs `macs` from its runtime's latest
/// check-in, read in the offer's transaction.
async fn node_resources(tx: &mut db::Tx<'_>, macs: &[String]) -> Result<Option<Resources>> {
    for m in macs {
        let Ok(mac) = metalcast_runtime_api::normalize_mac(m) else { continue };
        if let Some(row) = db::runtime::node_tx(tx, &mac).await?
            && let Ok(c) = serde_json::from_str::<metalcast_runtime_api::CheckIn>(&row.last_checkin)
        {
            return Ok(Some(Resources::from_inventory(&c.inventory)));
        }
    }
    Ok(None)
}

/// What the parent control plane says about the nodes of an offer made in
/// a nested instance (asked before the offer's transaction opens): the
/// lease each node is held under there, and its runtime inventory (the
/// runtime checks in at the root).
#[derive(Debug, Default)]
pub struct Parent {
    /// Node -> (parent lease id, its end).
    pub leases: BTreeMap<String, (i64, i64)>,
    /// Node -> resources from the parent's runtime report.
    pub resources: BTreeMap<String, Resources>,
}

/// Asks the parent about `nodes` (a nested instance; nothing otherwise).
pub async fn ask_parent(st: &AppState, nodes: &[String]) -> Result<Parent> {
    let mut p = Parent::default();
    let Some(up) = &st.upstream else { return Ok(p) };
    for n in nodes {
        check_name("node", n)?;
        if let Some(lease) = up.parent_lease(n).await? {
            p.leases.insert(n.clone(), lease);
        }
        if let Some(inv) = up.inventory(n).await.ok().flatten() {
            p.resources.insert(n.clone(), Resources::from_inventory(&inv));
        }
    }
    Ok(p)
}

/// Creates an offer (members of the owning project). In a nested instance
/// (`parent`): a node held under a lease at the parent is offered only for
/// a window that ends a cleaning gap before that lease does (a sub-lease
/// ends, and is cleaned, before its parent lease), and without a wipe (the
/// parent's lease ends with its own reclaim and wipe).
#[allow(clippy::too_many_arguments)]
pub async fn create(
    st: &AppState,
    c: &Caller,
    user: &str,
    tx: &mut Tx<'static>,
    now: i64,
    req: OfferCreate,
    parent: &Parent,
) -> Result<Offer> {
    check_name("project", &req.project)?;
    authorize(Actor::Caller(c), Action::ManageOffer, Resource::Offer { owner: &req.project, audience: &[] })?;
    check_units("the number of nodes", req.nodes.len() as i64)?;
    let mut nodes = req.nodes.clone();
    nodes.sort();
    nodes.dedup();
    if nodes.len() != req.nodes.len() {
        return Err(Error::BadRequest("a node is named twice".into()));
    }
    for n in &nodes {
        check_name("node", n)?;
    }
    for p in &req.audience {
        check_name("project", p)?;
    }
    let start = req.start.max(now);
    check_window(start, req.end, now)?;
    check_price("reserve_mph", req.reserve_mph)?;
    if let Some(b) = req.buy_now_mph {
        check_price("buy_now_mph", b)?;
        if b < req.reserve_mph {
            return Err(Error::BadRequest(format!("buy_now_mph {b} is below the reserve {}", req.reserve_mph)));
        }
    }
    if let Some(t) = req.closes_at {
        if t <= now || t > start {
            return Err(Error::BadRequest(format!(
                "closes_at {t} must be after now ({now}) and no later than the window's start ({start})"
            )));
        }
    } else if req.buy_now_mph.is_none() {
        return Err(Error::BadRequest("an offer needs a buy-now price, an auction (closes_at), or both".into()));
    }
    if !(0..=req.end - start).contains(&req.notice_secs) {
        return Err(Error::BadRequest("notice_secs must be between 0 and the window's length".into()));
    }
    if st.upstream.is_some() && req.wipe != WipeSpec::None {
        return Err(Error::BadRequest(
            "a nested instance cannot wipe between leases (its runtime answers to the root): offer with wipe none"
                .into(),
        ));
    }
    let gap = st.market.config.cleaning_gap_secs;
    for n in &nodes {
        if let Some((lease, end)) = parent.leases.get(n)
            && req.end > end - gap
        {
            return Err(Error::Conflict(format!(
                "node {n:?} is held under the parent's lease {lease} until {end}: a sub-lease offer must end by {}",
                end - gap
            )));
        }
    }
    // Positive proof: every node is in the owning project now, and has a
    // runtime inventory to describe it.
    let mut unit: Option<Resources> = None;
    for n in &nodes {
        if !db::nodes::owned_by(tx, n, &req.project).await? {
            return Err(Error::Conflict(format!("node {n:?} is not held by project {:?}", req.project)));
        }
        let macs = db::nics::macs_tx(tx, n).await?;
        let r = node_resources(tx, &macs).await?.or_else(|| parent.resources.get(n).copied()).ok_or_else(|| {
            Error::Conflict(format!(
                "node {n:?} has no runtime inventory: boot it into the metalcast runtime (it checks in) before offering it"
            ))
        })?;
        match unit {
            Some(u) if u != r => {
                return Err(Error::BadRequest(format!(
                    "a pool's nodes must be identical: {n:?} has {} where the first has {}",
                    r.class(),
                    u.class()
                )));
            }
            _ => unit = Some(r),
        }
    }
    if let Some(n) = db::market::offers::overlapping(tx, &nodes, start, req.end).await? {
        return Err(Error::Conflict(format!("node {n:?} is already offered for part of [{start}, {})", req.end)));
    }
    db::market::ledger::ensure_accounts(tx, &req.project).await?;
    let id = db::market::next_id(tx, "offer").await?;
    let row = OfferRow {
        id,
        owner: req.project.clone(),
        start_at: start,
        end_at: req.end,
        reserve_mph: req.reserve_mph,
        buy_now_mph: req.buy_now_mph,
        closes_at: req.closes_at,
        audience: serde_json::to_string(&req.audience).map_err(Error::internal)?,
        interruptible: i64::from(req.interruptible),
        notice_secs: req.notice_secs,
        wipe: wipe_str(req.wipe).into(),
        resources: serde_json::to_string(&unit).map_err(Error::internal)?,
        state: "open".into(),
        created_by: user.into(),
        created_at: now,
    };
    overlap(db::market::offers::insert(tx, &row, &nodes).await, || {
        "one of the nodes is already offered for part of that window".into()
    })?;
    tracing::info!(offer = id, owner = %req.project, nodes = nodes.len(), "market offer created");
    let units = nodes.len() as i64;
    offer_view(row, nodes, units)
}

/// Whether `c` may see offer `o`: its owner's members, its audience's, admins; open ones to everyone signed in.
fn visible(c: &Caller, o: &OfferRow) -> bool {
    let aud = audience(o);
    c.admin
        || c.has_project(&o.owner)
        || (o.state == "open" && (aud.is_empty() || aud.iter().any(|p| c.has_project(p))))
}

/// Offers the caller may see, newest first: `state` (empty: all) and
/// matching `filter` (`field op value,...`).
pub async fn list(st: &AppState, c: &Caller, state: &str, filter: &str) -> Result<Vec<Offer>> {
    if c.user.is_none() {
        return Err(Error::Unauthenticated);
    }
    let filter = Filter::parse(filter).map_err(Error::BadRequest)?;
    if !matches!(state, "" | "open" | "settled" | "withdrawn") {
        return Err(Error::BadRequest(format!("unknown offer state {state:?} (open, settled, withdrawn)")));
    }
    let now = db::market::now_pool(&st.db.pool, st.db.backend).await?;
    let mut out = Vec::new();
    for o in db::market::offers::list(&st.db.pool, state).await? {
        if visible(c, &o) && filter.matches(&resources(&o)?) {
            out.push(view(st, o, now).await?);
        }
    }
    Ok(out)
}

/// Whether one of the caller's projects bid on offer `id` or leases from it
/// (it may see the offer after it closed).
async fn party(st: &AppState, c: &Caller, id: i64) -> Result<bool> {
    if db::market::bids::list(&st.db.pool, "", id).await?.iter().any(|b| c.has_project(&b.project)) {
        return Ok(true);
    }
    for p in &c.projects {
        if db::market::leases::list(&st.db.pool, p).await?.iter().any(|l| l.offer == id && l.lessee == *p) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// One offer (404 when the caller may not see it: see [`visible`]; a
/// bidder or lessee also sees it after it closed).
pub async fn show(st: &AppState, c: &Caller, id: i64) -> Result<Offer> {
    if c.user.is_none() {
        return Err(Error::Unauthenticated);
    }
    let o = match db::market::offers::get(&st.db.pool, id).await? {
        Some(o) if visible(c, &o) || party(st, c, id).await? => Some(o),
        _ => None,
    };
    let o = o.ok_or_else(|| Error::NotFound(format!("offer {id} does not exist")))?;
    let now = db::market::now_pool(&st.db.pool, st.db.backend).await?;
    view(st, o, now).await
}

/// Withdraws an open offer (its owner): open bids lose and get their holds
/// back; leases sold already stay.
pub async fn withdraw(st: &AppState, c: &Caller, tx: &mut Tx<'static>, now: i64, id: i64) -> Result<Offer> {
    let o = db::market::offers::get_tx(tx, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("offer {id} does not exist")))?;
    let aud = audience(&o);
    authorize(Actor::Caller(c), Action::ManageOffer, Resource::Offer { owner: &o.owner, audience: &aud })?;
    if !db::market::offers::set_state(tx, id, "open", "withdrawn").await? {
        return Err(Error::Conflict(format!("offer {id} is {} already", o.state)));
    }
    for b in db::market::bids::open_of_offer(tx, id).await? {
        super::records::lose(st, tx, now, &b, "the offer was withdrawn").await?;
    }
    let o = db::market::offers::get_tx(tx, id).await?.ok_or_else(|| Error::internal("offer vanished"))?;
    let nodes = db::market::offers::nodes(&mut **tx, id).await?;
    offer_view(o, nodes, 0)
}
