//! Built-in netboot's rows: what each node boots (`nodes.boot`), full
//! mode's address leases (`dhcp_leases`) and the token key
//! (`server_secrets`). Lease times are unix seconds from the database clock.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use sqlx::AnyPool;

use super::{Backend, Tx, Writer};
use super::{now, now_pool};

/// What a node boots when it netboots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boot {
    /// The metalcast runtime (the default).
    Runtime,
    /// Its tenant OS on its disk: the iPXE script exits to the next boot device.
    Local,
    /// Nothing: no boot file (full mode: an address only).
    None,
}

text_enum!(Boot { Runtime = "runtime", Local = "local", None = "none" });

/// A MAC's node, as netboot needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BootRow {
    /// Node name.
    pub node: String,
    /// Its project (`None`: free).
    pub project: Option<String>,
    /// What it boots (a [`Boot`]).
    pub boot: String,
}

impl BootRow {
    /// The boot choice.
    pub fn boot(&self) -> Result<Boot, sqlx::Error> {
        self.boot.parse()
    }
}

/// The node one of whose NICs has `mac` (lower-case, colon-separated).
pub async fn by_mac(pool: &AnyPool, mac: &str) -> Result<Option<BootRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT n.name AS node, n.project AS project, n.boot AS boot FROM nics c JOIN nodes n ON n.name = c.node \
         WHERE LOWER(c.macaddr) = $1 ORDER BY n.name LIMIT 1",
    )
    .bind(mac)
    .fetch_optional(pool)
    .await
}

/// What `node` boots; `None`: no such node.
pub async fn boot_of(pool: &AnyPool, node: &str) -> Result<Option<Boot>, sqlx::Error> {
    let b: Option<String> =
        sqlx::query_scalar("SELECT boot FROM nodes WHERE name = $1").bind(node).fetch_optional(pool).await?;
    b.map(|b| b.parse()).transpose()
}

/// Sets what `node` boots; `false`: no such node.
pub async fn set_boot(w: &Writer, node: &str, boot: Boot) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("UPDATE nodes SET boot = $1 WHERE name = $2")
        .bind(boot.as_str())
        .bind(node)
        .execute(w.pool())
        .await?;
    Ok(r.rows_affected() == 1)
}

/// The secret called `name`, created from `fresh` by the first caller (every
/// replica then reads the same one).
pub async fn secret(w: &Writer, name: &str, fresh: &str) -> Result<String, sqlx::Error> {
    sqlx::query("INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
        .bind(name)
        .bind(fresh)
        .execute(w.pool())
        .await?;
    sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = $1").bind(name).fetch_one(w.pool()).await
}

/// A lease's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// Offered (DHCPOFFER), held for a short time.
    Offered,
    /// Bound (DHCPACK).
    Bound,
}

text_enum!(LeaseState { Offered = "offered", Bound = "bound" });

/// A lease row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LeaseRow {
    /// Address.
    pub ip: String,
    /// Holder.
    pub mac: String,
    /// A [`LeaseState`].
    pub state: String,
    /// Unix seconds (database clock).
    pub expires_at: i64,
}

/// Every lease that has not expired, by address.
pub async fn leases(pool: &AnyPool, backend: Backend) -> Result<Vec<LeaseRow>, sqlx::Error> {
    let t = now_pool(pool, backend).await?;
    sqlx::query_as("SELECT ip, mac, state, expires_at FROM dhcp_leases WHERE expires_at > $1 ORDER BY ip")
        .bind(t)
        .fetch_all(pool)
        .await
}

/// The address range and reservations leases come from.
#[derive(Debug, Clone)]
pub struct Range<'a> {
    /// First address.
    pub first: Ipv4Addr,
    /// Last address (inclusive).
    pub last: Ipv4Addr,
    /// Fixed addresses by MAC (lower-case); these addresses are never given to another MAC.
    pub reserved: &'a [(String, Ipv4Addr)],
}

impl Range<'_> {
    fn reservation(&self, mac: &str) -> Option<Ipv4Addr> {
        self.reserved.iter().find(|(m, _)| m == mac).map(|(_, ip)| *ip)
    }

    /// Whether `mac` may hold `ip`: its reservation, or a pool address reserved for nobody.
    fn allowed(&self, mac: &str, ip: Ipv4Addr) -> bool {
        match self.reservation(mac) {
            Some(r) => r == ip,
            None => {
                (u32::from(self.first)..=u32::from(self.last)).contains(&u32::from(ip))
                    && !self.reserved.iter().any(|(_, r)| *r == ip)
            }
        }
    }
}

/// Offers `mac` an address held for `hold_secs`: its current lease, its
/// reservation, `requested` if free and allowed, or the lowest free pool
/// address. `None`: nothing free. One transaction on the writer.
pub async fn offer(
    w: &Writer,
    backend: Backend,
    mac: &str,
    requested: Option<Ipv4Addr>,
    range: &Range<'_>,
    hold_secs: i64,
) -> Result<Option<(Ipv4Addr, i64)>, sqlx::Error> {
    let mut tx = w.begin().await?;
    let t = now(&mut tx, backend).await?;
    sqlx::query("DELETE FROM dhcp_leases WHERE expires_at <= $1").bind(t).execute(&mut *tx).await?;
    let mine: Option<(String, String, i64)> =
        sqlx::query_as("SELECT ip, state, expires_at FROM dhcp_leases WHERE mac = $1")
            .bind(mac)
            .fetch_optional(&mut *tx)
            .await?;
    if let Some((ip, state, expires)) = mine
        && let Ok(addr) = ip.parse::<Ipv4Addr>()
        && range.allowed(mac, addr)
    {
        let expires = if state == LeaseState::Offered.as_str() {
            let e = t + hold_secs;
            sqlx::query("UPDATE dhcp_leases SET expires_at = $1 WHERE mac = $2")
                .bind(e)
                .bind(mac)
                .execute(&mut *tx)
                .await?;
            e
        } else {
            expires
        };
        tx.commit().await?;
        return Ok(Some((addr, expires)));
    }
    // A lease outside the range (the configuration changed): forget it.
    sqlx::query("DELETE FROM dhcp_leases WHERE mac = $1").bind(mac).execute(&mut *tx).await?;
    let taken: HashSet<Ipv4Addr> = sqlx::query_scalar::<_, String>("SELECT ip FROM dhcp_leases")
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    let free = |ip: Ipv4Addr| !taken.contains(&ip) && range.allowed(mac, ip);
    let pick = match range.reservation(mac) {
        Some(r) => Some(r).filter(|r| !taken.contains(r)),
        None => requested
            .filter(|r| free(*r))
            .or_else(|| (u32::from(range.first)..=u32::from(range.last)).map(Ipv4Addr::from).find(|ip| free(*ip))),
    };
    let Some(ip) = pick else {
        tx.rollback().await?;
        return Ok(None);
    };
    let expires = t + hold_secs;
    insert_lease(&mut tx, ip, mac, LeaseState::Offered, expires).await?;
    tx.commit().await?;
    Ok(Some((ip, expires)))
}

/// Binds `ip` to `mac` for `lease_secs` (DHCPREQUEST): allowed when the
/// address is offered to or leased by this MAC, or free and allowed for it.
/// `None`: refuse (DHCPNAK).
pub async fn commit(
    w: &Writer,
    backend: Backend,
    mac: &str,
    ip: Ipv4Addr,
    range: &Range<'_>,
    lease_secs: i64,
) -> Result<Option<i64>, sqlx::Error> {
    if !range.allowed(mac, ip) {
        return Ok(None);
    }
    let mut tx = w.begin().await?;
    let t = now(&mut tx, backend).await?;
    sqlx::query("DELETE FROM dhcp_leases WHERE expires_at <= $1").bind(t).execute(&mut *tx).await?;
    let holder: Option<String> = sqlx::query_scalar("SELECT mac FROM dhcp_leases WHERE ip = $1")
        .bind(ip.to_string())
        .fetch_optional(&mut *tx)
        .await?;
    if holder.as_deref().is_some_and(|h| h != mac) {
        tx.rollback().await?;
        return Ok(None);
    }
    let expires = t + lease_secs;
    sqlx::query("DELETE FROM dhcp_leases WHERE mac = $1").bind(mac).execute(&mut *tx).await?;
    insert_lease(&mut tx, ip, mac, LeaseState::Bound, expires).await?;
    tx.commit().await?;
    Ok(Some(expires))
}

async fn insert_lease(
    tx: &mut Tx<'_>,
    ip: Ipv4Addr,
    mac: &str,
    state: LeaseState,
    expires: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO dhcp_leases (ip, mac, state, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(ip.to_string())
        .bind(mac)
        .bind(state.as_str())
        .bind(expires)
        .execute(&mut **tx)
        .await
        .map(drop)
}

/// Ends `mac`'s lease of `ip` (DHCPRELEASE / DHCPDECLINE).
pub async fn release(w: &Writer, mac: &str, ip: Ipv4Addr) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("DELETE FROM dhcp_leases WHERE ip = $1 AND mac = $2")
        .bind(ip.to_string())
        .bind(mac)
        .execute(w.pool())
        .await?;
    Ok(r.rows_affected() > 0)
}

/// The MAC holding `ip`, if any (for events of a TFTP or HTTP peer).
pub async fn mac_of_ip(pool: &AnyPool, ip: Ipv4Addr) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT mac FROM dhcp_leases WHERE ip = $1").bind(ip.to_string()).fetch_optional(pool).await
}
