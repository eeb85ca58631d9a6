//! The credits ledger, as callers see it: accounts, transfers, the admins'
//! mint, transfers between projects, reversals. Every change is a
//! transfer between two accounts in one transaction (`db::market::ledger`);
//! nothing is ever updated or deleted, a correction is a reversing transfer.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::insufficient;
use crate::app::AppState;
use crate::app::error::{Error, Result, check_name};
use crate::authz::Caller;
use crate::db::market::ledger::{Account, AccountKind, MINT, Memo, SYSTEM, TransferRow};
use crate::db::{self, Tx};

/// Largest single amount, milli-credits (a trillion credits).
pub const MAX_AMOUNT: i64 = 1_000_000_000_000_000;

/// `POST /v1/ledger/mint` (admins).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Mint {
    /// Project credited (its `available` account).
    pub project: String,
    /// Milli-credits.
    pub amount: i64,
    /// Why (kept in the audit trail).
    pub memo: String,
}

/// `POST /v1/ledger/transfers`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferCreate {
    /// Paying project (the caller must be a member).
    pub from_project: String,
    /// Its account paying: `available` (default) or `revenue`.
    #[serde(default = "available")]
    pub from_account: String,
    /// Receiving project (its `available` account; the same project moves revenue to available).
    pub to_project: String,
    /// Milli-credits.
    pub amount: i64,
    /// Why.
    #[serde(default)]
    pub memo: String,
}

fn available() -> String {
    "available".into()
}

/// An account.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccountView {
    /// Project (`@system` for the mint and the fees).
    pub project: String,
    /// available | escrow | revenue | mint | fees.
    pub kind: String,
    /// Milli-credits.
    pub balance: i64,
}

/// A transfer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Transfer {
    /// Id.
    pub id: i64,
    /// Debited project.
    pub from_project: String,
    /// Debited account.
    pub from_account: String,
    /// Credited project.
    pub to_project: String,
    /// Credited account.
    pub to_account: String,
    /// Milli-credits.
    pub amount: i64,
    /// mint | transfer | hold | release | payment | fee | reversal.
    pub kind: String,
    /// What it is for, e.g. `lease 3`.
    pub reference: String,
    /// Who made it (`market` for the market's own work).
    pub actor: String,
    /// Free text.
    pub memo: String,
    /// Unix seconds.
    pub created_at: i64,
}

fn transfer_view(t: TransferRow) -> Transfer {
    Transfer {
        id: t.id,
        from_project: t.debit_project,
        from_account: t.debit_kind,
        to_project: t.credit_project,
        to_account: t.credit_kind,
        amount: t.amount,
        kind: t.kind,
        reference: t.reference,
        actor: t.actor,
        memo: t.memo,
        created_at: t.created_at,
    }
}

fn check_amount(a: i64) -> Result<()> {
    if !(1..=MAX_AMOUNT).contains(&a) {
        return Err(Error::BadRequest(format!("amount must be between 1 and {MAX_AMOUNT} milli-credits, not {a}")));
    }
    Ok(())
}

fn check_memo(m: &str) -> Result<()> {
    if m.len() > 1024 || m.chars().any(char::is_control) {
        return Err(Error::BadRequest("memo: at most 1024 characters, no control characters".into()));
    }
    Ok(())
}

async fn must_exist(tx: &mut Tx<'_>, project: &str) -> Result<()> {
    check_name("project", project)?;
    if !db::projects::exists_tx(tx, project).await? {
        return Err(Error::not_found("project", project));
    }
    Ok(())
}

async fn one(tx: &mut Tx<'_>, id: i64) -> Result<Transfer> {
    Ok(transfer_view(
        db::market::ledger::transfer_row(tx, id).await?.ok_or_else(|| Error::internal("transfer vanished"))?,
    ))
}

/// Mints credits into a project (admins); the mint account goes negative by as much.
pub async fn mint(c: &Caller, user: &str, tx: &mut Tx<'static>, now: i64, req: Mint) -> Result<Transfer> {
    c.require_admin()?;
    check_amount(req.amount)?;
    check_memo(&req.memo)?;
    if req.memo.trim().is_empty() {
        return Err(Error::BadRequest("a mint needs a memo saying why (the audit trail)".into()));
    }
    must_exist(tx, &req.project).await?;
    db::market::ledger::ensure_accounts(tx, &req.project).await?;
    let to = Account::of(&req.project, AccountKind::Available);
    let m = Memo { kind: "mint", reference: "mint", actor: user, memo: &req.memo, now };
    let id = db::market::ledger::transfer(tx, MINT, to, req.amount, m).await?.map_err(insufficient)?;
    tracing::info!(project = %req.project, amount = req.amount, %user, "credits minted");
    one(tx, id).await
}

/// Moves credits from one of the caller's projects to another project.
pub async fn transfer(c: &Caller, user: &str, tx: &mut Tx<'static>, now: i64, req: TransferCreate) -> Result<Transfer> {
    check_amount(req.amount)?;
    check_memo(&req.memo)?;
    must_exist(tx, &req.from_project).await?;
    must_exist(tx, &req.to_project).await?;
    c.require_project(Some(&req.from_project))?;
    let kind = match req.from_account.as_str() {
        "available" => AccountKind::Available,
        "revenue" => AccountKind::Revenue,
        other => {
            return Err(Error::BadRequest(format!("from_account must be available or revenue, not {other:?}")));
        }
    };
    if kind == AccountKind::Available && req.from_project == req.to_project {
        return Err(Error::BadRequest("a transfer from a project's available credits to itself does nothing".into()));
    }
    db::market::ledger::ensure_accounts(tx, &req.from_project).await?;
    db::market::ledger::ensure_accounts(tx, &req.to_project).await?;
    let from = Account::of(&req.from_project, kind);
    let to = Account::of(&req.to_project, AccountKind::Available);
    let m = Memo { kind: "transfer", reference: "transfer", actor: user, memo: &req.memo, now };
    let id = db::market::ledger::transfer(tx, from, to, req.amount, m).await?.map_err(insufficient)?;
    one(tx, id).await
}

/// Reverses a mint or a transfer (admins), once: the same amount back.
pub async fn reverse(c: &Caller, user: &str, tx: &mut Tx<'static>, now: i64, id: i64) -> Result<Transfer> {
    c.require_admin()?;
    let t = db::market::ledger::transfer_row(tx, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("transfer {id} does not exist")))?;
    if !matches!(t.kind.as_str(), "mint" | "transfer") {
        return Err(Error::Conflict(format!(
            "transfer {id} is a {} the market made; only mints and transfers are reversed by hand",
            t.kind
        )));
    }
    if db::market::ledger::reversed(tx, id).await? {
        return Err(Error::Conflict(format!("transfer {id} was reversed already")));
    }
    let (dk, ck) = (
        AccountKind::parse(&t.debit_kind).ok_or_else(|| Error::internal("bad account kind"))?,
        AccountKind::parse(&t.credit_kind).ok_or_else(|| Error::internal("bad account kind"))?,
    );
    let reference = format!("transfer {id}");
    let memo = format!("reversal of transfer {id}");
    let m = Memo { kind: "reversal", reference: &reference, actor: user, memo: &memo, now };
    let from = Account::of(&t.credit_project, ck);
    let to = Account::of(&t.debit_project, dk);
    let rid = db::market::ledger::transfer(tx, from, to, t.amount, m).await?.map_err(insufficient)?;
    one(tx, rid).await
}

/// Accounts of `project` (its members; admins: any, or all when empty).
pub async fn accounts(st: &AppState, c: &Caller, project: &str) -> Result<Vec<AccountView>> {
    if project.is_empty() || project == SYSTEM {
        c.require_admin()?;
    } else {
        check_name("project", project)?;
        c.require_project(Some(project))?;
    }
    let p = if project == SYSTEM { SYSTEM } else { project };
    Ok(db::market::ledger::accounts(&st.db.pool, p)
        .await?
        .into_iter()
        .map(|a| AccountView { project: a.project, kind: a.kind, balance: a.balance })
        .collect())
}

/// Transfers touching `project` (its members; admins: all when empty), newest first.
pub async fn transfers(st: &AppState, c: &Caller, project: &str, limit: i64) -> Result<Vec<Transfer>> {
    if project.is_empty() {
        c.require_admin()?;
    } else {
        check_name("project", project)?;
        c.require_project(Some(project))?;
    }
    let limit = limit.clamp(1, 10_000);
    Ok(db::market::ledger::transfers(&st.db.pool, project, limit).await?.into_iter().map(transfer_view).collect())
}

/// The ledger's self-check (admins): every number must be zero.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Audit {
    /// Sum of every balance (the mint included): 0.
    pub sum: i64,
    /// Accounts whose balance differs from their transfers: 0.
    pub drifted_accounts: i64,
    /// Projects whose escrow differs from their open holds: 0.
    pub escrow_mismatches: i64,
    /// Negative balances outside the mint: 0.
    pub negative_balances: i64,
}

/// Runs the ledger's invariant checks (admins).
pub async fn audit(st: &AppState, c: &Caller) -> Result<Audit> {
    c.require_admin()?;
    let (sum, drifted_accounts, escrow_mismatches, negative_balances) = db::market::ledger::audit(&st.db.pool).await?;
    Ok(Audit { sum, drifted_accounts, escrow_mismatches, negative_balances })
}
