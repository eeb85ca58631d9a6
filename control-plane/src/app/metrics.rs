//! A `/metrics` scrape: the series read from the database (the same on every
//! replica) and the counters other crates keep are brought up to date, then
//! everything is rendered (`crate::metrics`).

use std::collections::HashMap;

use super::AppState;
use super::error::Result;
use crate::db;
use crate::db::deployments::DeploymentState;

/// The text of one scrape.
pub async fn scrape(st: &AppState) -> Result<String> {
    let m = &st.metrics;
    let _one = m.scraping.lock().await;
    // Deployments by state, zeros included (an alert on `running` needs the series to exist).
    let counts: HashMap<String, i64> = db::deployments::count_by_state(&st.db.pool).await?.into_iter().collect();
    let states = [DeploymentState::Running, DeploymentState::Done, DeploymentState::Failed];
    let by_state: Vec<(&str, i64)> =
        states.iter().map(|s| (s.as_str(), counts.get(s.as_str()).copied().unwrap_or(0))).collect();
    m.set_deployments(&by_state);
    // Runtime check-ins: their total, and each runtime's age named by the node its MAC belongs to.
    let rows = super::runtime::checkin_ages(st).await?;
    m.set_checkins(rows.iter().map(|r| u64::try_from(r.checkins).unwrap_or(0)).sum());
    let ages: Vec<(String, String, i64)> = rows.into_iter().map(|r| (r.node, r.mac, r.age)).collect();
    m.set_checkin_ages(&ages);
    m.copy_runtime(st.runtime.stale_reports(), st.runtime.refused_checkins());
    m.copy_netboot(&st.netboot.counters.snapshot());
    Ok(m.render())
}
