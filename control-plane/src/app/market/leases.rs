//! Leases and their state machine:
//!
//! ```text
//! scheduled -> granting -> active -> notice -> revoking -> ended
//!     |            |          |         |          |
//!  cancelled     failed    (recall: notice, then revoking -> recalled)   failed
//! ```
//!
//! *Granting* (the driver, at the start): the owner's networks come off the
//! node, then, in one transaction, the node moves from the owner's project
//! to the lessee's (only if it is in the owner's project now: positive
//! proof) and the lease becomes active. From then on the lessee acts on the
//! node through the normal API (power, console, networks, deployments), as
//! after HIL's `connect_node`. *Revoking* (at the end): the node is brought
//! back to the metalcast runtime (kexec, else the BMC), wiped if the offer
//! asks, its networks detached; then, in one transaction, it moves back to
//! the owner, the owner is paid from the lease's hold (minus the market's
//! fee) and the rest is released. A step that fails is retried on the
//! next ticks; after `attempts` failures a grant fails (full refund) and a
//! revoke fails with the node taken out of both projects for an admin
//! (neither party may act on a node nobody has proven clean).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{cost, fee, insufficient};
use crate::app::AppState;
use crate::app::error::{Error, Result};
use crate::app::reclaim::WipeSpec;
use crate::authz::{Action, Actor, Caller, Resource, authorize};
use crate::db::market::leases::{LeaseRow, LeaseState};
use crate::db::market::ledger::{Account, AccountKind, FEES, Memo};
use crate::db::{self, Tx};

/// A lease of one node.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Lease {
    /// Id.
    pub id: i64,
    /// The offer it came from.
    pub offer: i64,
    /// The node.
    pub node: String,
    /// Owning project (gets the node back).
    pub owner: String,
    /// Lessee project.
    pub lessee: String,
    /// Start (inclusive), unix seconds.
    pub start: i64,
    /// End (exclusive), unix seconds.
    pub end: i64,
    /// Price, milli-credits per node-hour.
    pub price_mph: i64,
    /// What the window costs, milli-credits.
    pub cost: i64,
    /// State.
    pub state: LeaseState,
    /// The owner may recall it.
    pub interruptible: bool,
    /// Notice, seconds.
    pub notice_secs: i64,
    /// Wipe at the end.
    pub wipe: WipeSpec,
    /// Recalled by the owner.
    pub recalled: bool,
    /// Seconds left until the end (0 once past).
    pub secs_left: i64,
    /// Why it failed, or the last retry's cause.
    pub reason: String,
    /// The winning bid (auction).
    pub bid: Option<i64>,
    /// The autobuy rule that bought it.
    pub autobuy: Option<i64>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds of the last state change.
    pub updated_at: i64,
}

/// `POST /v1/market/leases/{id}/extend`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Extend {
    /// The new end, unix seconds (exclusive); within the offer's window and free time.
    pub end: i64,
}

pub(crate) fn lease_view(l: LeaseRow, now: i64) -> Lease {
    Lease {
        id: l.id,
        offer: l.offer,
        cost: cost(l.price_mph, l.end_at - l.start_at),
        secs_left: (l.end_at - now).max(0),
        state: LeaseState::parse(&l.state).unwrap_or(LeaseState::Failed),
        wipe: super::records::wipe_of(&l.wipe),
        node: l.node,
        owner: l.owner,
        lessee: l.lessee,
        start: l.start_at,
        end: l.end_at,
        price_mph: l.price_mph,
        interruptible: l.interruptible == 1,
        notice_secs: l.notice_secs,
        recalled: l.recalled == 1,
        reason: l.reason,
        bid: l.bid,
        autobuy: l.autobuy,
        created_at: l.created_at,
        updated_at: l.updated_at,
    }
}

fn party(l: &LeaseRow) -> Resource<'_> {
    Resource::Lease { owner: &l.owner, lessee: &l.lessee }
}

/// Leases the caller is a party to (admins: all), newest first; `project` narrows to one party.
pub async fn list(st: &AppState, c: &Caller, project: &str) -> Result<Vec<Lease>> {
    if c.user.is_none() {
        return Err(Error::Unauthenticated);
    }
    let now = db::market::now_pool(&st.db.pool, st.db.backend).await?;
    Ok(db::market::leases::list(&st.db.pool, project)
        .await?
        .into_iter()
        .filter(|l| authorize(Actor::Caller(c), Action::SeeLease, party(l)).is_ok())
        .map(|l| lease_view(l, now))
        .collect())
}

/// One lease (404 unless the caller is a party).
pub async fn show(st: &AppState, c: &Caller, id: i64) -> Result<Lease> {
    let l = db::market::leases::get(&st.db.pool, id)
        .await?
        .filter(|l| authorize(Actor::Caller(c), Action::SeeLease, party(l)).is_ok())
        .ok_or_else(|| Error::NotFound(format!("lease {id} does not exist")))?;
    let now = db::market::now_pool(&st.db.pool, st.db.backend).await?;
    Ok(lease_view(l, now))
}

async fn get(tx: &mut Tx<'_>, c: &Caller, id: i64, action: Action<'_>) -> Result<LeaseRow> {
    let l = db::market::leases::get_tx(tx, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("lease {id} does not exist")))?;
    if authorize(Actor::Caller(c), Action::SeeLease, party(&l)).is_err() {
        return Err(Error::NotFound(format!("lease {id} does not exist")));
    }
    authorize(Actor::Caller(c), action, party(&l))?;
    Ok(l)
}

/// Records a lease event for both parties.
async fn event(tx: &mut Tx<'_>, l: &LeaseRow, kind: &str, msg: &str) -> Result<()> {
    for p in [&l.lessee, &l.owner] {
        let row = crate::app::events::new_row(&l.node, Some(p), kind, &format!("lease {}: {msg}", l.id));
        db::events::insert(&mut **tx, &row).await?;
    }
    Ok(())
}

/// Cancels a lease that has not started (owner or lessee): full refund.
pub async fn cancel(st: &AppState, c: &Caller, tx: &mut Tx<'static>, now: i64, id: i64) -> Result<Lease> {
    let l = get(tx, c, id, Action::CancelLease).await?;
    if !db::market::leases::transition(tx, id, LeaseState::Scheduled, LeaseState::Cancelled, now, Some("cancelled"))
        .await?
    {
        return Err(Error::Conflict(format!("lease {id} is {}: only a scheduled lease can be cancelled", l.state)));
    }
    let reference = format!("lease {id}");
    let m = Memo { kind: "release", reference: &reference, actor: "market", memo: "lease cancelled", now };
    db::market::ledger::close_hold(tx, l.hold, m).await?;
    event(tx, &l, "lease-cancelled", "cancelled before it started; fully refunded").await?;
    st.metrics.market("lease_cancelled");
    let l = db::market::leases::get_tx(tx, id).await?.ok_or_else(|| Error::internal("lease vanished"))?;
    Ok(lease_view(l, now))
}

/// Recalls an interruptible active lease (its owner): it ends after its
/// notice, and the lessee pays only for the time it had.
pub async fn recall(st: &AppState, c: &Caller, tx: &mut Tx<'static>, now: i64, id: i64) -> Result<Lease> {
    let l = get(tx, c, id, Action::RecallLease).await?;
    if l.interruptible != 1 {
        return Err(Error::Conflict(format!("lease {id} is not interruptible")));
    }
    let state = LeaseState::parse(&l.state);
    if !matches!(state, Some(LeaseState::Active | LeaseState::Notice)) || l.recalled == 1 {
        return Err(Error::Conflict(format!("lease {id} is {}: only an active lease can be recalled", l.state)));
    }
    let end = (now + l.notice_secs).min(l.end_at).max(l.start_at + 1);
    db::market::leases::set_end(tx, id, end, st.market.config.cleaning_gap_secs, true).await?;
    if state == Some(LeaseState::Active) && l.notice_secs > 0 {
        db::market::leases::transition(tx, id, LeaseState::Active, LeaseState::Notice, now, None).await?;
    }
    event(tx, &l, "lease-recalled", &format!("recalled by the owner; ends at {end}")).await?;
    st.metrics.market("lease_recalled");
    let l = db::market::leases::get_tx(tx, id).await?.ok_or_else(|| Error::internal("lease vanished"))?;
    Ok(lease_view(l, now))
}

/// Extends an active lease into free time within its offer (the lessee),
/// holding the extra cost.
pub async fn extend(
    st: &AppState,
    c: &Caller,
    user: &str,
    tx: &mut Tx<'static>,
    now: i64,
    id: i64,
    req: super::leases::Extend,
) -> Result<Lease> {
    let l = get(tx, c, id, Action::ExtendLease).await?;
    if l.state != LeaseState::Active.as_str() || l.recalled == 1 {
        return Err(Error::Conflict(format!("lease {id} is {}: only an active lease can be extended", l.state)));
    }
    if req.end <= l.end_at {
        return Err(Error::BadRequest(format!("the new end {} is not after the current end {}", req.end, l.end_at)));
    }
    let o = db::market::offers::get_tx(tx, l.offer).await?.ok_or_else(|| Error::internal("offer vanished"))?;
    if req.end > o.end_at {
        return Err(Error::Conflict(format!("a lease never outlives its offer: offer {} ends at {}", o.id, o.end_at)));
    }
    let gap = st.market.config.cleaning_gap_secs;
    if db::market::leases::overlaps(tx, &l.node, l.start_at, req.end + gap, id).await? {
        return Err(Error::Conflict(format!("node {:?} is leased again before {}", l.node, req.end + gap)));
    }
    let extra = cost(l.price_mph, req.end - l.start_at) - cost(l.price_mph, l.end_at - l.start_at);
    let reference = format!("lease {id}");
    let m = Memo { kind: "hold", reference: &reference, actor: user, memo: "lease extended", now };
    if extra > 0 {
        db::market::ledger::grow_hold(tx, l.hold, &l.lessee, extra, m).await?.map_err(insufficient)?;
    }
    super::overlap(db::market::leases::set_end(tx, id, req.end, gap, false).await, || {
        format!("node {:?} is leased again before {}", l.node, req.end + gap)
    })?;
    let l = db::market::leases::get_tx(tx, id).await?.ok_or_else(|| Error::internal("lease vanished"))?;
    Ok(lease_view(l, now))
}

/// One grant attempt of a lease in `granting`; returns whether it is active now.
pub(crate) async fn grant(st: &AppState, l: &LeaseRow) -> Result<bool> {
    // The previous lease of this node is still being revoked: wait (no attempt counted).
    if let Some((other, _, _)) = db::market::leases::holding(&st.db.pool, &l.node).await?
        && other != l.id
    {
        return Ok(false);
    }
    let timeout = st.market.config.revoke_timeout;
    let detached = crate::app::reclaim::detach_all(st, &l.node, timeout).await;
    let mut tx = st.db.writer.begin().await?;
    let now = db::market::now(&mut tx, st.db.backend).await?;
    let keep = st.provision.network.as_deref();
    let moved = detached.is_ok() && db::nodes::hand_over(&mut tx, &l.node, &l.owner, &l.lessee, keep).await?;
    if moved
        && db::market::leases::transition(&mut tx, l.id, LeaseState::Granting, LeaseState::Active, now, Some(""))
            .await?
    {
        db::market::leases::attempts_reset(&mut tx, l.id).await?;
        event(&mut tx, l, "lease-started", &format!("node {} granted to {} until {}", l.node, l.lessee, l.end_at))
            .await?;
        tx.commit().await?;
        st.metrics.market("lease_active");
        tracing::info!(lease = l.id, node = %l.node, lessee = %l.lessee, "lease granted");
        return Ok(true);
    }
    drop(tx);
    let why = match detached {
        Err(e) => format!("detaching the owner's networks failed: {}", e.public_message()),
        Ok(_) => format!(
            "node {:?} is not free in project {:?} (another project holds it, or a network, a pending action or a deployment does)",
            l.node, l.owner
        ),
    };
    failed_attempt(st, l, LeaseState::Granting, &why).await?;
    Ok(false)
}

/// Counts a failed attempt; at the limit the lease fails (a grant: full refund;
/// a revoke: the node goes to the admins, the lessee pays for its time).
async fn failed_attempt(st: &AppState, l: &LeaseRow, from: LeaseState, why: &str) -> Result<()> {
    st.metrics.market("attempt_failed");
    let mut tx = st.db.writer.begin().await?;
    let now = db::market::now(&mut tx, st.db.backend).await?;
    let n = db::market::leases::attempt_failed(&mut tx, l.id, why).await?;
    tracing::warn!(lease = l.id, node = %l.node, attempt = n, reason = why, "lease step failed");
    if n < st.market.config.attempts {
        tx.commit().await?;
        return Ok(());
    }
    let reason = format!("failed after {n} attempts: {why}");
    if !db::market::leases::transition(&mut tx, l.id, from, LeaseState::Failed, now, Some(&reason)).await? {
        return Ok(());
    }
    let reference = format!("lease {}", l.id);
    if from == LeaseState::Revoking {
        db::nodes::quarantine(&mut tx, &l.node, &l.lessee).await?;
        pay_owner(st, &mut tx, l, now).await?;
        event(&mut tx, l, "lease-failed", &format!("{reason}; the node is held for an admin")).await?;
    } else {
        let m = Memo { kind: "release", reference: &reference, actor: "market", memo: "lease failed", now };
        db::market::ledger::close_hold(&mut tx, l.hold, m).await?;
        event(&mut tx, l, "lease-failed", &format!("{reason}; fully refunded")).await?;
    }
    tx.commit().await?;
    st.metrics.market("lease_failed");
    Ok(())
}

/// Pays the owner for the lease's (final) window out of its hold, minus the
/// market's fee, and releases the rest to the lessee.
async fn pay_owner(st: &AppState, tx: &mut Tx<'_>, l: &LeaseRow, now: i64) -> Result<()> {
    let cur = db::market::leases::get_tx(tx, l.id).await?.ok_or_else(|| Error::internal("lease vanished"))?;
    let reference = format!("lease {}", l.id);
    let held = db::market::ledger::hold(tx, l.hold).await?.map_or(0, |(_, a)| a);
    let charge = cost(cur.price_mph, cur.end_at - cur.start_at).min(held);
    let fee = fee(charge, st.market.config.fee_bps);
    let revenue = Account::of(&l.owner, AccountKind::Revenue);
    let m = Memo { kind: "payment", reference: &reference, actor: "market", memo: "lease paid", now };
    if !db::market::ledger::pay_from_hold(tx, l.hold, &l.lessee, charge - fee, revenue, m).await? {
        return Err(Error::internal(format!("hold {} of lease {} cannot pay {}", l.hold, l.id, charge - fee)));
    }
    let m = Memo { kind: "fee", memo: "market fee", ..m };
    if !db::market::ledger::pay_from_hold(tx, l.hold, &l.lessee, fee, FEES, m).await? {
        return Err(Error::internal(format!("hold {} of lease {} cannot pay the fee", l.hold, l.id)));
    }
    let m = Memo { kind: "release", memo: "unused time refunded", ..m };
    db::market::ledger::close_hold(tx, l.hold, m).await?;
    Ok(())
}

/// One revoke attempt of a lease in `revoking`: back to the runtime, wipe,
/// networks off, then back to the owner and paid. Returns whether it ended.
pub(crate) async fn revoke(st: &AppState, l: &LeaseRow) -> Result<bool> {
    let timeout = st.market.config.revoke_timeout;
    let steps = async {
        // Made for the market driver's job: only while this replica holds it.
        let work = crate::app::fencing::Work::Job(crate::app::fencing::MARKET_DRIVER);
        let (method, _) = crate::app::reclaim::back_to_runtime(st, work, "market", &l.lessee, &l.node, timeout).await?;
        let wipe = super::records::wipe_of(&l.wipe);
        if wipe != WipeSpec::None {
            crate::app::reclaim::wipe(st, work, &l.node, &l.lessee, wipe, timeout).await?;
        }
        crate::app::reclaim::detach_all(st, &l.node, timeout).await?;
        Ok::<_, Error>(method)
    };
    let method = match steps.await {
        Ok(m) => m,
        Err(e) => {
            failed_attempt(st, l, LeaseState::Revoking, &format!("reclaim: {}", e.public_message())).await?;
            return Ok(false);
        }
    };
    let mut tx = st.db.writer.begin().await?;
    let now = db::market::now(&mut tx, st.db.backend).await?;
    let keep = st.provision.network.as_deref();
    let cur = db::market::leases::get_tx(&mut tx, l.id).await?.ok_or_else(|| Error::internal("lease vanished"))?;
    let done = if cur.recalled == 1 { LeaseState::Recalled } else { LeaseState::Ended };
    if !db::nodes::hand_over(&mut tx, &l.node, &l.lessee, &l.owner, keep).await? {
        drop(tx);
        let why =
            format!("node {:?} could not move back to {:?} (not in {:?}, or still held)", l.node, l.owner, l.lessee);
        failed_attempt(st, l, LeaseState::Revoking, &why).await?;
        return Ok(false);
    }
    if !db::market::leases::transition(&mut tx, l.id, LeaseState::Revoking, done, now, Some("")).await? {
        return Ok(false);
    }
    pay_owner(st, &mut tx, l, now).await?;
    let msg = format!("ended; node {} reclaimed ({method}) and back with {}", l.node, l.owner);
    event(&mut tx, l, "lease-ended", &msg).await?;
    tx.commit().await?;
    st.consoles.stop(&l.node);
    st.metrics.market("lease_ended");
    tracing::info!(lease = l.id, node = %l.node, owner = %l.owner, %method, "lease ended");
    Ok(true)
}

/// The parent took `node` back from this nested instance (its own lease
/// there ended, or it was recalled): every sub-lease of the node ends now,
/// in `tx` (the transaction that removes the node): a scheduled one is
/// cancelled with a full refund, a running one ends and is paid for the
/// time it had; the node's open offers are withdrawn. Both parties get an
/// event saying why.
pub(crate) async fn node_gone(st: &AppState, tx: &mut Tx<'_>, node: &str, why: &str) -> Result<()> {
    let now = db::market::now(tx, st.db.backend).await?;
    let gap = st.market.config.cleaning_gap_secs;
    for l in db::market::leases::live_of_node(tx, node).await? {
        let Some(state) = LeaseState::parse(&l.state) else { continue };
        let reference = format!("lease {}", l.id);
        if state == LeaseState::Scheduled {
            let reason = format!("cancelled: {why}");
            if db::market::leases::transition(tx, l.id, state, LeaseState::Cancelled, now, Some(&reason)).await? {
                let m = Memo {
                    kind: "release",
                    reference: &reference,
                    actor: "market",
                    memo: "the parent took the node back",
                    now,
                };
                db::market::ledger::close_hold(tx, l.hold, m).await?;
                event(tx, &l, "lease-cancelled", &format!("{reason}; fully refunded")).await?;
            }
            continue;
        }
        let end = now.clamp(l.start_at + 1, l.end_at);
        db::market::leases::set_end(tx, l.id, end, gap, false).await?;
        let reason = format!("ended early: {why}");
        if db::market::leases::transition(tx, l.id, state, LeaseState::Ended, now, Some(&reason)).await? {
            pay_owner(st, tx, &l, now).await?;
            event(tx, &l, "lease-ended", &format!("{reason}; paid for the time it had")).await?;
            st.metrics.market("lease_ended_by_parent");
        }
    }
    for offer in db::market::offers::open_with_node(tx, node).await? {
        if db::market::offers::set_state(tx, offer, "open", "withdrawn").await? {
            for b in db::market::bids::open_of_offer(tx, offer).await? {
                super::records::lose(st, tx, now, &b, why).await?;
            }
        }
    }
    Ok(())
}

/// Moves due leases along (one transaction each): scheduled -> granting at
/// the start, active -> notice `notice_secs` before the end, active|notice
/// -> revoking at the end. Returns how many moved.
pub(crate) async fn advance(st: &AppState, now: i64) -> Result<usize> {
    let mut moved = 0;
    for l in db::market::leases::in_state(&st.db.pool, LeaseState::Scheduled).await? {
        if l.start_at <= now {
            moved += step(st, &l, LeaseState::Scheduled, LeaseState::Granting, "lease-granting", "its start has come")
                .await?;
        }
    }
    for l in db::market::leases::in_state(&st.db.pool, LeaseState::Active).await? {
        if l.end_at <= now {
            moved += step(st, &l, LeaseState::Active, LeaseState::Revoking, "lease-ending", "its end has come").await?;
        } else if l.notice_secs > 0 && l.end_at - l.notice_secs <= now {
            let msg = format!("ends at {} (in {} s)", l.end_at, l.end_at - now);
            moved += step(st, &l, LeaseState::Active, LeaseState::Notice, "lease-notice", &msg).await?;
        }
    }
    for l in db::market::leases::in_state(&st.db.pool, LeaseState::Notice).await? {
        if l.end_at <= now {
            moved += step(st, &l, LeaseState::Notice, LeaseState::Revoking, "lease-ending", "its end has come").await?;
        }
    }
    Ok(moved)
}

async fn step(st: &AppState, l: &LeaseRow, from: LeaseState, to: LeaseState, kind: &str, msg: &str) -> Result<usize> {
    let mut tx = st.db.writer.begin().await?;
    let now = db::market::now(&mut tx, st.db.backend).await?;
    if !db::market::leases::transition(&mut tx, l.id, from, to, now, None).await? {
        return Ok(0);
    }
    event(&mut tx, l, kind, msg).await?;
    tx.commit().await?;
    Ok(1)
}
