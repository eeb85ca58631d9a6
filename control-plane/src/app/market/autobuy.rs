//! Autobuy: standing demand. A rule keeps `target` nodes matching a filter
//! leased for its project, buying now at most at `max_mph` for `hours` at a
//! time, and never spends more than `daily_budget` a day (UTC). The budget
//! is a hold: at the first purchase of a day the rule holds the day's
//! budget in escrow (or pauses, if the project cannot cover it), and every
//! purchase is carved out of that hold. Nothing is checked by reading a
//! balance; the hold is the limit.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::filter::Filter;
use super::records::{audience, resources};
use super::{check_price, check_units, cost, insufficient};
use crate::app::AppState;
use crate::app::error::{Error, Result, check_name};
use crate::authz::Caller;
use crate::db::market::autobuy::AutobuyRow;
use crate::db::market::ledger::Memo;
use crate::db::{self, Tx};

/// `POST /v1/market/autobuy`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AutobuyCreate {
    /// Buying project.
    pub project: String,
    /// Resource filter, e.g. `cpus>=16,memory_gib>=64`.
    #[serde(default)]
    pub filter: String,
    /// Nodes to keep leased.
    pub target: i64,
    /// Highest buy-now price, milli-credits per node-hour.
    pub max_mph: i64,
    /// Most spent per day (UTC), milli-credits.
    pub daily_budget: i64,
    /// Length of each lease bought, hours.
    pub hours: i64,
}

/// An autobuy rule.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Autobuy {
    /// Id.
    pub id: i64,
    /// Buying project.
    pub project: String,
    /// Resource filter.
    pub filter: String,
    /// Nodes to keep leased.
    pub target: i64,
    /// Highest buy-now price, milli-credits per node-hour.
    pub max_mph: i64,
    /// Most spent per day, milli-credits.
    pub daily_budget: i64,
    /// Length of each lease bought, hours.
    pub hours: i64,
    /// Left of today's budget (held), milli-credits.
    pub budget_left: i64,
    /// Live leases it bought.
    pub leased: i64,
    /// Whether it runs.
    pub enabled: bool,
    /// What it last did, or why it is paused.
    pub status: String,
    /// Unix seconds.
    pub created_at: i64,
}

async fn view(st: &AppState, r: AutobuyRow) -> Result<Autobuy> {
    let leased = db::market::leases::live_of_autobuy(&st.db.pool, r.id).await?;
    let budget_left = match r.hold {
        Some(h) => db::market::ledger::held(&st.db.pool, h).await?,
        None => 0,
    };
    Ok(Autobuy {
        id: r.id,
        project: r.project,
        filter: r.filter,
        target: r.target,
        max_mph: r.max_mph,
        daily_budget: r.daily_budget,
        hours: r.hours,
        budget_left,
        leased,
        enabled: r.enabled == 1,
        status: r.reason,
        created_at: r.created_at,
    })
}

/// Creates a rule (members of the project).
pub async fn create(c: &Caller, user: &str, tx: &mut Tx<'static>, now: i64, req: AutobuyCreate) -> Result<Autobuy> {
    check_name("project", &req.project)?;
    c.require_project(Some(&req.project))?;
    if !db::projects::exists_tx(tx, &req.project).await? {
        return Err(Error::not_found("project", &req.project));
    }
    let filter = Filter::parse(&req.filter).map_err(Error::BadRequest)?;
    check_units("target", req.target)?;
    check_price("max_mph", req.max_mph)?;
    if !(1..=super::ledger::MAX_AMOUNT).contains(&req.daily_budget) {
        return Err(Error::BadRequest("daily_budget must be positive".into()));
    }
    if !(1..=24 * 366).contains(&req.hours) {
        return Err(Error::BadRequest("hours must be between 1 and 8784".into()));
    }
    db::market::ledger::ensure_accounts(tx, &req.project).await?;
    let id = db::market::next_id(tx, "autobuy").await?;
    let row = AutobuyRow {
        id,
        project: req.project,
        filter: filter.to_string(),
        target: req.target,
        max_mph: req.max_mph,
        daily_budget: req.daily_budget,
        hours: req.hours,
        hold: None,
        budget_day: 0,
        enabled: 1,
        reason: "created".into(),
        created_by: user.into(),
        created_at: now,
    };
    db::market::autobuy::insert(tx, &row).await?;
    Ok(Autobuy {
        id,
        project: row.project,
        filter: row.filter,
        target: row.target,
        max_mph: row.max_mph,
        daily_budget: row.daily_budget,
        hours: row.hours,
        budget_left: 0,
        leased: 0,
        enabled: true,
        status: row.reason,
        created_at: now,
    })
}

/// Rules of the caller's projects (admins: all); one project's if given.
pub async fn list(st: &AppState, c: &Caller, project: &str) -> Result<Vec<Autobuy>> {
    if c.user.is_none() {
        return Err(Error::Unauthenticated);
    }
    let mut out = Vec::new();
    for r in db::market::autobuy::list(&st.db.pool, project).await? {
        if c.has_project(&r.project) {
            out.push(view(st, r).await?);
        }
    }
    Ok(out)
}

/// Deletes a rule (members of its project), releasing its budget hold.
pub async fn delete(c: &Caller, tx: &mut Tx<'static>, now: i64, id: i64) -> Result<serde_json::Value> {
    let r = db::market::autobuy::get_tx(tx, id).await?.filter(|r| c.has_project(&r.project));
    let r = r.ok_or_else(|| Error::NotFound(format!("autobuy rule {id} does not exist")))?;
    if let Some(h) = r.hold {
        let reference = format!("autobuy {id}");
        let m = Memo { kind: "release", reference: &reference, actor: "market", memo: "autobuy rule deleted", now };
        db::market::ledger::close_hold(tx, h, m).await?;
    }
    db::market::autobuy::delete(tx, id).await?;
    Ok(serde_json::json!({ "deleted": id }))
}

/// One pass of every enabled rule: buys what is missing, within budget.
/// Returns how many leases it bought.
pub(crate) async fn run(st: &AppState) -> Result<usize> {
    let mut bought = 0;
    for r in db::market::autobuy::list(&st.db.pool, "").await? {
        if r.enabled != 1 {
            continue;
        }
        let have = db::market::leases::live_of_autobuy(&st.db.pool, r.id).await?;
        for _ in have..r.target {
            match buy_one(st, r.id).await {
                Ok(true) => bought += 1,
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!(rule = r.id, error = %e, "autobuy failed");
                    break;
                }
            }
        }
    }
    Ok(bought)
}

/// Buys one node for rule `id` in one transaction; false when nothing fits.
async fn buy_one(st: &AppState, id: i64) -> Result<bool> {
    // Candidates are read before the transaction (on PostgreSQL the pool is
    // the writer: a read on it inside the transaction would need a second
    // connection); the transaction then locks each offer and re-checks it.
    let Some(rule) = db::market::autobuy::list(&st.db.pool, "").await?.into_iter().find(|r| r.id == id) else {
        return Ok(false);
    };
    let filter = Filter::parse(&rule.filter).map_err(Error::BadRequest)?;
    let wall = db::market::now_pool(&st.db.pool, st.db.backend).await?;
    // The cheapest open offer that matches, is open to the project and not its own.
    let candidates: Vec<_> = db::market::offers::list(&st.db.pool, "open")
        .await?
        .into_iter()
        .filter(|o| o.buy_now_mph.is_some_and(|p| p <= rule.max_mph) && o.end_at > wall)
        .filter(|o| crate::authz::offer_open_to(&rule.project, &o.owner, &audience(o)))
        .filter(|o| resources(o).is_ok_and(|res| filter.matches(&res)))
        .collect();
    if candidates.is_empty() {
        return Ok(false);
    }
    let mut tx = st.db.writer.begin().await?;
    let now = db::market::now(&mut tx, st.db.backend).await?;
    let Some(r) = db::market::autobuy::get_tx(&mut tx, id).await? else { return Ok(false) };
    let reference = format!("autobuy {id}");
    // Today's budget, held.
    let day = now.div_euclid(86_400);
    let mut hold = r.hold;
    if r.budget_day != day {
        if let Some(h) = hold {
            let m = Memo { kind: "release", reference: &reference, actor: "market", memo: "autobuy day over", now };
            db::market::ledger::close_hold(&mut tx, h, m).await?;
        }
        let m = Memo { kind: "hold", reference: &reference, actor: "market", memo: "autobuy daily budget", now };
        match db::market::ledger::open_hold(&mut tx, &r.project, r.daily_budget, m).await? {
            Ok(h) => hold = Some(h),
            Err(e) => {
                drop(tx);
                let mut tx = st.db.writer.begin().await?;
                let msg = format!("paused today: {}", insufficient(e));
                db::market::autobuy::set_status(&mut tx, id, true, &msg).await?;
                tx.commit().await?;
                return Ok(false);
            }
        }
        db::market::autobuy::set_budget(&mut tx, id, hold, day).await?;
    }
    let Some(hold) = hold else { return Ok(false) };
    let gap = st.market.config.cleaning_gap_secs;
    let mut offers = candidates;
    offers.sort_by_key(|o| (o.buy_now_mph, o.id));
    for o in offers {
        let start = o.start_at.max(now);
        let end = (start + r.hours * 3600).min(o.end_at);
        if end <= start
            || o.buy_now_mph.is_none_or(|p| p > r.max_mph)
            || !db::market::offers::lock(&mut tx, o.id, "open").await?
        {
            continue;
        }
        let Some(node) = db::market::offers::free_nodes(&mut tx, o.id, start, end + gap).await?.into_iter().next()
        else {
            continue;
        };
        let price = o.buy_now_mph.unwrap_or(r.max_mph);
        let amount = cost(price, end - start);
        let lease_ref = format!("lease by autobuy {id}");
        let Some(lease_hold) =
            db::market::ledger::split_hold(&mut tx, hold, &r.project, amount, &lease_ref, now).await?
        else {
            let msg = format!("today's budget is spent (next purchase needs {amount} milli-credits)");
            db::market::autobuy::set_status(&mut tx, id, true, &msg).await?;
            tx.commit().await?;
            return Ok(false);
        };
        let l = super::trade::new_lease(
            st,
            &mut tx,
            now,
            &o,
            &node,
            &r.project,
            (start, end),
            price,
            (None, Some(id)),
            Some(lease_hold),
        )
        .await?;
        let msg = format!("bought lease {} of node {} at {price}", l.id, l.node);
        db::market::autobuy::set_status(&mut tx, id, true, &msg).await?;
        tx.commit().await?;
        st.metrics.market("autobuy_bought");
        return Ok(true);
    }
    Ok(false)
}
