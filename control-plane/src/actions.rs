//! Asynchronous networking actions (HIL's `NetworkingAction`).
//!
//! `connect_network`, `detach_network` and `revert` queue a PENDING row (the
//! database allows one pending row per NIC) and spawn a task that drives the
//! switch and then records DONE or ERROR.

use sqlx::Row;

use crate::drivers::SwitchConfig;
use crate::error::ApiError;
use crate::state::AppState;

/// Start executing action `id` in the background.
pub fn spawn(st: AppState, id: String) {
    tokio::spawn(async move {
        let status = match execute(&st, &id).await {
            Ok(()) => "DONE",
            Err(e) => {
                tracing::warn!(action = %id, error = %e, cause = ?e, "networking action failed");
                "ERROR"
            }
        };
        if status == "ERROR"
            && let Err(e) = set_status(&st, &id, "ERROR").await
        {
            tracing::error!(action = %id, error = %e, "cannot record action failure");
        }
        st.metrics.action_finished(status);
        st.action_done.notify_waiters();
    });
}

async fn set_status(st: &AppState, id: &str, status: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE network_actions SET status = $2 WHERE id = $1 AND status = 'PENDING'")
        .bind(id)
        .bind(status)
        .execute(&st.db.pool)
        .await
        .map(drop)
}

fn vlan_of(v: i64) -> Result<u16, ApiError> {
    u16::try_from(v).map_err(|_| ApiError::Internal("vlan out of range".into()))
}

async fn execute(st: &AppState, id: &str) -> Result<(), ApiError> {
    let pool = &st.db.pool;
    let a = sqlx::query(
        "SELECT a.node, a.nic, a.kind, a.network, a.channel, n.port_switch, n.port_name, s.config \
         FROM network_actions a \
         JOIN nics n ON n.node = a.node AND n.name = a.nic \
         LEFT JOIN switches s ON s.name = n.port_switch WHERE a.id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await?;
    let node: String = a.try_get(0)?;
    let nic: String = a.try_get(1)?;
    let kind: String = a.try_get(2)?;
    let network: Option<String> = a.try_get(3)?;
    let channel: String = a.try_get(4)?;
    let port: Option<String> = a.try_get(6)?;
    let config: Option<String> = a.try_get(7)?;
    let (Some(port), Some(config)) = (port, config) else {
        return Err(ApiError::Conflict("nic is not connected to a switch port".into()));
    };
    let switch: SwitchConfig = serde_json::from_str(&config).map_err(|e| ApiError::Internal(Box::new(e)))?;

    match (kind.as_str(), network) {
        ("modify_port", Some(net)) => {
            let vlan: i64 = sqlx::query("SELECT vlan FROM networks WHERE name = $1")
                .bind(&net)
                .fetch_one(pool)
                .await?
                .try_get(0)?;
            switch.add_vlan(&port, vlan_of(vlan)?, channel == "vlan/native").await?;
            let mut tx = pool.begin().await?;
            sqlx::query("INSERT INTO attachments (node, nic, network, channel) VALUES ($1, $2, $3, $4)")
                .bind(&node)
                .bind(&nic)
                .bind(&net)
                .bind(&channel)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE network_actions SET status = 'DONE' WHERE id = $1").bind(id).execute(&mut *tx).await?;
            tx.commit().await?;
        }
        ("modify_port", None) | ("revert_port", None) => {
            let rows = sqlx::query(
                "SELECT a.channel, w.vlan FROM attachments a JOIN networks w ON w.name = a.network \
                 WHERE a.node = $1 AND a.nic = $2",
            )
            .bind(&node)
            .bind(&nic)
            .fetch_all(pool)
            .await?;
            let mut removed = Vec::new();
            for r in rows {
                let ch: String = r.try_get(0)?;
                if kind == "revert_port" || ch == channel {
                    switch.del_vlan(&port, vlan_of(r.try_get(1)?)?, ch == "vlan/native").await?;
                    removed.push(ch);
                }
            }
            let mut tx = pool.begin().await?;
            for ch in removed {
                sqlx::query("DELETE FROM attachments WHERE node = $1 AND nic = $2 AND channel = $3")
                    .bind(&node)
                    .bind(&nic)
                    .bind(ch)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query("UPDATE network_actions SET status = 'DONE' WHERE id = $1").bind(id).execute(&mut *tx).await?;
            tx.commit().await?;
        }
        (k, _) => return Err(ApiError::Internal(format!("unknown action kind {k}").into())),
    }
    tracing::info!(action = %id, %node, %nic, %kind, "networking action done");
    Ok(())
}

/// Mark actions left PENDING by a previous server process as ERROR (their
/// tasks died with it), so the NICs are usable again.
pub async fn recover(st: &AppState) -> Result<u64, sqlx::Error> {
    let r = sqlx::query("UPDATE network_actions SET status = 'ERROR' WHERE status = 'PENDING'")
        .execute(&st.db.pool)
        .await?;
    Ok(r.rows_affected())
}
