//! The credits ledger: accounts with cached balances, append-only
//! transfers, escrow holds. Amounts are integer milli-credits.
//!
//! A transfer is one conditional `UPDATE` per side plus one `INSERT`, all in
//! the caller's transaction: the debit side only moves if the balance
//! covers it (`balance >= amount` in the same statement, never a read and
//! then a write), and the `CHECK (balance >= 0)` of every account but the
//! mint holds it again. The two balance rows are updated in a fixed order
//! (by project, then kind) so two opposite transfers cannot deadlock.

use sqlx::AnyPool;

use super::next_id;
use crate::db::Tx;

/// The system's accounts belong to this pseudo-project (no project name can start with `@`).
pub const SYSTEM: &str = "@system";

/// An account's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AccountKind {
    /// Spendable credits of a project.
    Available,
    /// Credits held for open bids, leases and autobuy budgets (the sum of the open holds).
    Escrow,
    /// What an owner earned from its leases.
    Revenue,
    /// The system's source of credits (negative: minus everything minted).
    Mint,
    /// The market's fees.
    Fees,
}

impl AccountKind {
    /// The column value.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Available => "available",
            AccountKind::Escrow => "escrow",
            AccountKind::Revenue => "revenue",
            AccountKind::Mint => "mint",
            AccountKind::Fees => "fees",
        }
    }

    /// Parses the column value.
    pub fn parse(s: &str) -> Option<AccountKind> {
        Some(match s {
            "available" => AccountKind::Available,
            "escrow" => AccountKind::Escrow,
            "revenue" => AccountKind::Revenue,
            "mint" => AccountKind::Mint,
            "fees" => AccountKind::Fees,
            _ => return None,
        })
    }
}

/// One account: (project, kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Account<'a> {
    /// Owning project, or [`SYSTEM`].
    pub project: &'a str,
    /// Kind.
    pub kind: AccountKind,
}

impl<'a> Account<'a> {
    /// A project's account of `kind`.
    pub fn of(project: &'a str, kind: AccountKind) -> Self {
        Account { project, kind }
    }
}

/// The mint.
pub const MINT: Account<'static> = Account { project: SYSTEM, kind: AccountKind::Mint };
/// The fee account.
pub const FEES: Account<'static> = Account { project: SYSTEM, kind: AccountKind::Fees };

/// Why a transfer did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insufficient {
    /// The account that could not pay.
    pub project: String,
    /// Its kind.
    pub kind: AccountKind,
    /// The amount asked for.
    pub amount: i64,
}

/// What a transfer is for, and by whom.
#[derive(Debug, Clone, Copy)]
pub struct Memo<'a> {
    /// mint | transfer | hold | release | payment | fee | reversal.
    pub kind: &'a str,
    /// The object it belongs to, e.g. `lease 3`.
    pub reference: &'a str,
    /// The user (or `market` for the market's own work).
    pub actor: &'a str,
    /// Free text.
    pub memo: &'a str,
    /// Database time.
    pub now: i64,
}

/// Creates a project's three accounts if missing.
pub async fn ensure_accounts(tx: &mut Tx<'_>, project: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO ledger_accounts (project, kind, balance) VALUES ($1, 'available', 0), ($1, 'escrow', 0), \
         ($1, 'revenue', 0) ON CONFLICT (project, kind) DO NOTHING",
    )
    .bind(project)
    .execute(&mut **tx)
    .await
    .map(drop)
}

async fn debit(tx: &mut Tx<'_>, a: Account<'_>, amount: i64) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE ledger_accounts SET balance = balance - $1 \
         WHERE project = $2 AND kind = $3 AND (kind = 'mint' OR balance >= $1)",
    )
    .bind(amount)
    .bind(a.project)
    .bind(a.kind.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

async fn credit(tx: &mut Tx<'_>, a: Account<'_>, amount: i64) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("UPDATE ledger_accounts SET balance = balance + $1 WHERE project = $2 AND kind = $3")
        .bind(amount)
        .bind(a.project)
        .bind(a.kind.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Moves `amount` (> 0) from `from` to `to`, recording the transfer; returns
/// its id, or [`Insufficient`] (nothing written) when `from` cannot pay or
/// an account does not exist.
pub async fn transfer(
    tx: &mut Tx<'_>,
    from: Account<'_>,
    to: Account<'_>,
    amount: i64,
    m: Memo<'_>,
) -> Result<Result<i64, Insufficient>, sqlx::Error> {
    debug_assert!(amount > 0);
    let insufficient = || Insufficient { project: from.project.to_string(), kind: from.kind, amount };
    // A fixed order of the two row locks.
    let ok = if from <= to {
        let debited = debit(tx, from, amount).await?;
        debited && credit(tx, to, amount).await?
    } else {
        let credited = credit(tx, to, amount).await?;
        credited && debit(tx, from, amount).await?
    };
    if !ok {
        // The caller rolls the transaction back; nothing of it remains.
        return Ok(Err(insufficient()));
    }
    let id = next_id(tx, "transfer").await?;
    sqlx::query(
        "INSERT INTO ledger_transfers (id, debit_project, debit_kind, credit_project, credit_kind, amount, kind, \
         reference, actor, memo, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(id)
    .bind(from.project)
    .bind(from.kind.as_str())
    .bind(to.project)
    .bind(to.kind.as_str())
    .bind(amount)
    .bind(m.kind)
    .bind(m.reference)
    .bind(m.actor)
    .bind(m.memo)
    .bind(m.now)
    .execute(&mut **tx)
    .await?;
    Ok(Ok(id))
}

/// Opens a hold of `amount` on `project`'s available credits (moved to its
/// escrow); returns the hold's id, or [`Insufficient`].
pub async fn open_hold(
    tx: &mut Tx<'_>,
    project: &str,
    amount: i64,
    m: Memo<'_>,
) -> Result<Result<i64, Insufficient>, sqlx::Error> {
    if amount > 0 {
        let from = Account::of(project, AccountKind::Available);
        let to = Account::of(project, AccountKind::Escrow);
        if let Err(e) = transfer(tx, from, to, amount, Memo { kind: "hold", ..m }).await? {
            return Ok(Err(e));
        }
    }
    Ok(Ok(insert_hold(tx, project, amount, m.reference, m.now).await?))
}

/// Records a new open hold of `amount` (the escrow transfer is the caller's).
async fn insert_hold(
    tx: &mut Tx<'_>,
    project: &str,
    amount: i64,
    reference: &str,
    now: i64,
) -> Result<i64, sqlx::Error> {
    let id = next_id(tx, "hold").await?;
    sqlx::query(
        "INSERT INTO ledger_holds (id, project, amount, reference, status, created_at) VALUES ($1, $2, $3, $4, 'open', $5)",
    )
    .bind(id)
    .bind(project)
    .bind(amount)
    .bind(reference)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(id)
}

/// An open hold: (project, amount still held); `None` when closed or unknown.
pub async fn hold(tx: &mut Tx<'_>, id: i64) -> Result<Option<(String, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT project, amount FROM ledger_holds WHERE id = $1 AND status = 'open'")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
}

/// What hold `id` still holds (0 when closed or unknown).
pub async fn held(pool: &AnyPool, id: i64) -> Result<i64, sqlx::Error> {
    let r: Option<i64> = sqlx::query_scalar("SELECT amount FROM ledger_holds WHERE id = $1 AND status = 'open'")
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(r.unwrap_or(0))
}

/// Carves `amount` out of open hold `from` into a new hold with
/// `reference` (escrow unchanged: the money stays held, for another
/// purpose); `None` (nothing written) when `from` holds less.
pub async fn split_hold(
    tx: &mut Tx<'_>,
    from: i64,
    project: &str,
    amount: i64,
    reference: &str,
    now: i64,
) -> Result<Option<i64>, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE ledger_holds SET amount = amount - $1 WHERE id = $2 AND project = $3 AND status = 'open' AND amount >= $1",
    )
    .bind(amount)
    .bind(from)
    .bind(project)
    .execute(&mut **tx)
    .await?;
    if r.rows_affected() != 1 {
        return Ok(None);
    }
    Ok(Some(insert_hold(tx, project, amount, reference, now).await?))
}

/// Adds `amount` from the project's available credits to an open hold (an
/// extension); [`Insufficient`] when it cannot.
pub async fn grow_hold(
    tx: &mut Tx<'_>,
    id: i64,
    project: &str,
    amount: i64,
    m: Memo<'_>,
) -> Result<Result<(), Insufficient>, sqlx::Error> {
    let from = Account::of(project, AccountKind::Available);
    let to = Account::of(project, AccountKind::Escrow);
    if let Err(e) = transfer(tx, from, to, amount, Memo { kind: "hold", ..m }).await? {
        return Ok(Err(e));
    }
    sqlx::query("UPDATE ledger_holds SET amount = amount + $1 WHERE id = $2 AND status = 'open'")
        .bind(amount)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(Ok(()))
}

/// Pays `amount` out of an open hold to `to`; false (nothing written) when
/// the hold is closed or holds less.
pub async fn pay_from_hold(
    tx: &mut Tx<'_>,
    id: i64,
    project: &str,
    amount: i64,
    to: Account<'_>,
    m: Memo<'_>,
) -> Result<bool, sqlx::Error> {
    if amount == 0 {
        return Ok(true);
    }
    let r = sqlx::query(
        "UPDATE ledger_holds SET amount = amount - $1 WHERE id = $2 AND project = $3 AND status = 'open' AND amount >= $1",
    )
    .bind(amount)
    .bind(id)
    .bind(project)
    .execute(&mut **tx)
    .await?;
    if r.rows_affected() != 1 {
        return Ok(false);
    }
    Ok(transfer(tx, Account::of(project, AccountKind::Escrow), to, amount, m).await?.is_ok())
}

/// Closes an open hold, releasing what it still holds to the project's
/// available credits; returns the amount released, `None` when the hold was
/// closed already (a hold closes exactly once).
pub async fn close_hold(tx: &mut Tx<'_>, id: i64, m: Memo<'_>) -> Result<Option<i64>, sqlx::Error> {
    let Some((project, amount)) = hold(tx, id).await? else { return Ok(None) };
    let r = sqlx::query(
        "UPDATE ledger_holds SET status = 'closed', amount = 0 WHERE id = $1 AND status = 'open' AND amount = $2",
    )
    .bind(id)
    .bind(amount)
    .execute(&mut **tx)
    .await?;
    if r.rows_affected() != 1 {
        return Ok(None);
    }
    if amount > 0 {
        let from = Account::of(&project, AccountKind::Escrow);
        let to = Account::of(&project, AccountKind::Available);
        if transfer(tx, from, to, amount, Memo { kind: "release", ..m }).await?.is_err() {
            return Err(sqlx::Error::Protocol(format!("escrow of {project} is below its hold {id}")));
        }
    }
    Ok(Some(amount))
}

/// An account row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AccountRow {
    /// Project (or [`SYSTEM`]).
    pub project: String,
    /// Kind (column text).
    pub kind: String,
    /// Balance, milli-credits.
    pub balance: i64,
}

/// Accounts of `project` (empty: every account), by project and kind.
pub async fn accounts(pool: &AnyPool, project: &str) -> Result<Vec<AccountRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT project, kind, balance FROM ledger_accounts WHERE ($1 = '' OR project = $1) ORDER BY project, kind",
    )
    .bind(project)
    .fetch_all(pool)
    .await
}

/// A transfer row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TransferRow {
    /// Id.
    pub id: i64,
    /// Debited project.
    pub debit_project: String,
    /// Debited account kind.
    pub debit_kind: String,
    /// Credited project.
    pub credit_project: String,
    /// Credited account kind.
    pub credit_kind: String,
    /// Milli-credits.
    pub amount: i64,
    /// Kind of transfer.
    pub kind: String,
    /// What it is for.
    pub reference: String,
    /// Who made it.
    pub actor: String,
    /// Free text.
    pub memo: String,
    /// Unix seconds.
    pub created_at: i64,
}

const TRANSFER_COLS: &str = "id, debit_project, debit_kind, credit_project, credit_kind, amount, kind, reference, \
                             actor, memo, created_at";

/// Transfers touching `project` (empty: all), newest first, at most `limit`.
pub async fn transfers(pool: &AnyPool, project: &str, limit: i64) -> Result<Vec<TransferRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {TRANSFER_COLS} FROM ledger_transfers \
         WHERE ($1 = '' OR debit_project = $1 OR credit_project = $1) ORDER BY id DESC LIMIT $2"
    )))
    .bind(project)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// What each owner received for leases (payments into revenue), by project.
pub async fn revenue(pool: &AnyPool) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT credit_project, CAST(SUM(amount) AS BIGINT) FROM ledger_transfers \
         WHERE kind = 'payment' AND credit_kind = 'revenue' GROUP BY credit_project ORDER BY credit_project",
    )
    .fetch_all(pool)
    .await
}

/// One transfer, inside `tx`.
pub async fn transfer_row(tx: &mut Tx<'_>, id: i64) -> Result<Option<TransferRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {TRANSFER_COLS} FROM ledger_transfers WHERE id = $1")))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
}

/// Whether transfer `id` was reversed already.
pub async fn reversed(tx: &mut Tx<'_>, id: i64) -> Result<bool, sqlx::Error> {
    let r: Option<i64> =
        sqlx::query_scalar("SELECT id FROM ledger_transfers WHERE kind = 'reversal' AND reference = $1")
            .bind(format!("transfer {id}"))
            .fetch_optional(&mut **tx)
            .await?;
    Ok(r.is_some())
}

/// The ledger's checks, as numbers: (sum of all balances, accounts whose
/// balance differs from their transfers, projects whose escrow differs from
/// their open holds, negative non-mint balances). All zero in a sound ledger.
pub async fn audit(pool: &AnyPool) -> Result<(i64, i64, i64, i64), sqlx::Error> {
    let sum: i64 = sqlx::query_scalar("SELECT CAST(COALESCE(SUM(balance), 0) AS BIGINT) FROM ledger_accounts")
        .fetch_one(pool)
        .await?;
    let drift: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM ledger_accounts a WHERE a.balance <> \
           CAST(COALESCE((SELECT SUM(amount) FROM ledger_transfers t WHERE t.credit_project = a.project AND t.credit_kind = a.kind), 0) AS BIGINT) \
         - CAST(COALESCE((SELECT SUM(amount) FROM ledger_transfers t WHERE t.debit_project = a.project AND t.debit_kind = a.kind), 0) AS BIGINT)",
    )
    .fetch_one(pool)
    .await?;
    let escrow: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM ledger_accounts a WHERE a.kind = 'escrow' AND a.balance <> \
           CAST(COALESCE((SELECT SUM(amount) FROM ledger_holds h WHERE h.project = a.project AND h.status = 'open'), 0) AS BIGINT)",
    )
    .fetch_one(pool)
    .await?;
    let negative: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ledger_accounts WHERE kind <> 'mint' AND balance < 0")
        .fetch_one(pool)
        .await?;
    Ok((sum, drift, escrow, negative))
}
