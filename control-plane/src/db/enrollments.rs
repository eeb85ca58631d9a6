//! Enrollments (`enrollments`): machines of unknown MAC that booted the
//! runtime in enrollment mode and checked in, waiting for an admin.

use sqlx::AnyPool;

use super::now;
use super::{Backend, Writer};

/// Where an enrollment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrollState {
    /// Checked in; waiting for an admin.
    Pending,
    /// Registered as a node.
    Accepted,
    /// Refused: never netbooted again.
    Rejected,
}

text_enum!(EnrollState { Pending = "pending", Accepted = "accepted", Rejected = "rejected" });

/// An enrollment row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EnrollmentRow {
    /// MAC it checked in with (lower-case).
    pub mac: String,
    /// An [`EnrollState`].
    pub state: String,
    /// Its address on the provisioning network.
    pub address: String,
    /// JSON inventory from its latest check-in.
    pub inventory: String,
    /// Unix seconds.
    pub first_seen: i64,
    /// Unix seconds.
    pub last_seen: i64,
    /// The node it became.
    pub node: Option<String>,
}

/// Every enrollment, newest first.
pub async fn list(pool: &AnyPool) -> Result<Vec<EnrollmentRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT mac, state, address, inventory, first_seen, last_seen, node FROM enrollments \
         ORDER BY first_seen DESC, mac",
    )
    .fetch_all(pool)
    .await
}

/// One enrollment.
pub async fn get(pool: &AnyPool, mac: &str) -> Result<Option<EnrollmentRow>, sqlx::Error> {
    sqlx::query_as("SELECT mac, state, address, inventory, first_seen, last_seen, node FROM enrollments WHERE mac = $1")
        .bind(mac)
        .fetch_optional(pool)
        .await
}

/// Records a check-in of `mac` in enrollment mode: a new pending
/// enrollment, or the latest address and inventory of a pending one.
/// Returns the enrollment's state (an accepted or rejected one is not changed).
pub async fn seen(
    w: &Writer,
    backend: Backend,
    mac: &str,
    address: &str,
    inventory: &str,
) -> Result<EnrollState, sqlx::Error> {
    let mut tx = w.begin().await?;
    let t = now(&mut tx, backend).await?;
    sqlx::query(
        "INSERT INTO enrollments (mac, state, address, inventory, first_seen, last_seen) \
         VALUES ($1, 'pending', $2, $3, $4, $4) ON CONFLICT (mac) DO UPDATE \
         SET address = excluded.address, inventory = excluded.inventory, last_seen = excluded.last_seen \
         WHERE enrollments.state = 'pending'",
    )
    .bind(mac)
    .bind(address)
    .bind(inventory)
    .bind(t)
    .execute(&mut *tx)
    .await?;
    let state: String =
        sqlx::query_scalar("SELECT state FROM enrollments WHERE mac = $1").bind(mac).fetch_one(&mut *tx).await?;
    tx.commit().await?;
    state.parse()
}

/// What accepting an enrollment did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// The node was registered with one NIC of the enrollment's MAC.
    Registered,
    /// No pending enrollment of that MAC.
    NotPending,
    /// The node name is taken.
    NameTaken,
    /// A NIC with that MAC is registered already.
    MacTaken(String),
}

/// Registers the pending enrollment `mac` as node `node` (free, BMC `obm`
/// JSON) with one NIC `nic`, and marks it accepted, in one transaction.
pub async fn accept(w: &Writer, mac: &str, node: &str, nic: &str, obm: &str) -> Result<Accepted, sqlx::Error> {
    let mut tx = w.begin().await?;
    let pending: Option<String> =
        sqlx::query_scalar("SELECT state FROM enrollments WHERE mac = $1").bind(mac).fetch_optional(&mut *tx).await?;
    if pending.as_deref() != Some(EnrollState::Pending.as_str()) {
        tx.rollback().await?;
        return Ok(Accepted::NotPending);
    }
    let holder: Option<String> = sqlx::query_scalar("SELECT node FROM nics WHERE LOWER(macaddr) = $1 LIMIT 1")
        .bind(mac)
        .fetch_optional(&mut *tx)
        .await?;
    if let Some(h) = holder {
        tx.rollback().await?;
        return Ok(Accepted::MacTaken(h));
    }
    match sqlx::query("INSERT INTO nodes (name, project, obm) VALUES ($1, NULL, $2)")
        .bind(node)
        .bind(obm)
        .execute(&mut *tx)
        .await
    {
        Ok(_) => {}
        Err(e) if super::is_conflict(&e) => {
            tx.rollback().await?;
            return Ok(Accepted::NameTaken);
        }
        Err(e) => return Err(e),
    }
    sqlx::query("INSERT INTO nics (node, name, macaddr) VALUES ($1, $2, $3)")
        .bind(node)
        .bind(nic)
        .bind(mac)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE enrollments SET state = 'accepted', node = $2 WHERE mac = $1")
        .bind(mac)
        .bind(node)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Accepted::Registered)
}

/// Marks the pending enrollment `mac` rejected; `false`: none pending.
pub async fn reject(w: &Writer, mac: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("UPDATE enrollments SET state = 'rejected' WHERE mac = $1 AND state = 'pending'")
        .bind(mac)
        .execute(w.pool())
        .await?;
    Ok(r.rows_affected() == 1)
}

/// The state of `mac`'s enrollment, if any.
pub async fn state_of(pool: &AnyPool, mac: &str) -> Result<Option<EnrollState>, sqlx::Error> {
    let s: Option<String> =
        sqlx::query_scalar("SELECT state FROM enrollments WHERE mac = $1").bind(mac).fetch_optional(pool).await?;
    s.map(|s| s.parse()).transpose()
}
