//! Per-project quotas (nodes, images, image storage), enforced atomically.
//!
//! Every operation that can push a project over a limit runs in one
//! transaction that first locks the project's row ([`lock_project`]), then
//! counts, then changes. Two racing requests therefore see each other's
//! effect: at most the quota is ever used, never one more.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::error::{Error, Result, check_name};
use crate::authz::Caller;
use crate::db::{self, Tx};

/// A project's limits; `null` means unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Most nodes the project may hold at once.
    #[serde(default)]
    pub max_nodes: Option<i64>,
    /// Most images the project may own.
    #[serde(default)]
    pub max_images: Option<i64>,
    /// Most bytes of bundle files the project's images may take.
    #[serde(default)]
    pub max_image_bytes: Option<i64>,
}

/// A project's limits and what it uses now.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QuotaUsage {
    /// Project name.
    pub project: String,
    /// Limits.
    pub quota: Quota,
    /// Nodes held.
    pub nodes: i64,
    /// Images owned.
    pub images: i64,
    /// Bytes of the owned images' bundle files.
    pub image_bytes: i64,
}

impl From<db::quotas::QuotaRow> for Quota {
    fn from(r: db::quotas::QuotaRow) -> Self {
        Quota { max_nodes: r.max_nodes, max_images: r.max_images, max_image_bytes: r.max_image_bytes }
    }
}

/// Locks `project`'s row for the rest of `tx`; 404 when it does not exist.
pub async fn lock_project(tx: &mut Tx<'_>, backend: db::Backend, project: &str) -> Result<()> {
    if !db::projects::lock(tx, backend, project).await? {
        return Err(Error::not_found("project", project));
    }
    Ok(())
}

/// Within a transaction holding [`lock_project`]: fails unless `project` may take one more node.
pub async fn check_node(tx: &mut Tx<'_>, project: &str) -> Result<()> {
    let q = db::quotas::get(&mut **tx, project).await?;
    if let Some(max) = q.max_nodes {
        let nodes = db::quotas::usage(tx, project).await?.nodes;
        if nodes + 1 > max {
            return Err(over_quota(project, format!("it holds {nodes} of at most {max} nodes")));
        }
    }
    Ok(())
}

/// Within a transaction holding [`lock_project`]: fails unless `project` may own one more image of `bytes`.
pub async fn check_image(tx: &mut Tx<'_>, project: &str, bytes: u64) -> Result<()> {
    let q = db::quotas::get(&mut **tx, project).await?;
    let u = db::quotas::usage(tx, project).await?;
    if let Some(max) = q.max_images
        && u.images + 1 > max
    {
        return Err(over_quota(project, format!("it owns {} of at most {max} images", u.images)));
    }
    if let Some(max) = q.max_image_bytes
        && u.image_bytes.saturating_add(i64::try_from(bytes).unwrap_or(i64::MAX)) > max
    {
        return Err(over_quota(
            project,
            format!("{} + {bytes} bytes of images exceed its limit of {max} bytes", u.image_bytes),
        ));
    }
    Ok(())
}

/// Before an upload to `project` of `declared` bytes (0 when the length is
/// not known): fails as the final check would, before a byte is read. The
/// bytes of images the project may still store (`None`: no byte limit), for
/// stopping an upload that passes them.
pub async fn precheck_image(st: &AppState, project: &str, declared: u64) -> Result<Option<u64>> {
    let mut tx = st.db.writer.begin().await?;
    lock_project(&mut tx, st.db.backend, project).await?;
    check_image(&mut tx, project, declared).await?;
    let q = db::quotas::get(&mut *tx, project).await?;
    let used = db::quotas::usage(&mut tx, project).await?.image_bytes;
    drop(tx); // read only: rolled back
    Ok(q.max_image_bytes.map(|max| u64::try_from(max.saturating_sub(used)).unwrap_or(0)))
}

/// The upload to `project` passed the `left` bytes of images it may still store.
pub fn upload_over_quota(project: &str, left: u64) -> Error {
    over_quota(project, format!("the upload passed the {left} bytes of images it may still store"))
}

fn over_quota(project: &str, why: String) -> Error {
    Error::Forbidden(format!("quota exceeded for project {project:?}: {why}"))
}

/// A project's quota and usage (members and admins).
pub async fn show(st: &AppState, c: &Caller, project: String) -> Result<QuotaUsage> {
    check_name("project", &project)?;
    c.require_project(Some(&project))?;
    let mut tx = st.db.writer.begin().await?;
    lock_project(&mut tx, st.db.backend, &project).await?;
    let quota = db::quotas::get(&mut *tx, &project).await?.into();
    let u = db::quotas::usage(&mut tx, &project).await?;
    tx.commit().await?;
    Ok(QuotaUsage { project, quota, nodes: u.nodes, images: u.images, image_bytes: u.image_bytes })
}

/// Sets a project's quota (admins). Lowering a limit below what the project
/// uses now is refused (409, naming the use) unless `force`: with it, nothing
/// is taken away and new requests are refused until the use is back under.
pub async fn set(st: &AppState, c: &Caller, project: String, q: Quota, force: bool) -> Result<Quota> {
    c.require_admin()?;
    check_name("project", &project)?;
    for (name, v) in [("max_nodes", q.max_nodes), ("max_images", q.max_images), ("max_image_bytes", q.max_image_bytes)]
    {
        if v.is_some_and(|v| v < 0) {
            return Err(Error::BadRequest(format!("{name} must be >= 0 or null")));
        }
    }
    let mut tx = st.db.writer.begin().await?;
    lock_project(&mut tx, st.db.backend, &project).await?;
    if !force {
        let old: Quota = db::quotas::get(&mut *tx, &project).await?.into();
        let u = db::quotas::usage(&mut tx, &project).await?;
        let mut below = Vec::new();
        for (name, new, old, used, what) in [
            ("max_nodes", q.max_nodes, old.max_nodes, u.nodes, "nodes held"),
            ("max_images", q.max_images, old.max_images, u.images, "images owned"),
            ("max_image_bytes", q.max_image_bytes, old.max_image_bytes, u.image_bytes, "bytes of images"),
        ] {
            // Lowered (from unlimited or a higher limit) to under what is used now.
            if let Some(new) = new
                && new < used
                && old.is_none_or(|old| new < old)
            {
                below.push(format!("{name} {new} < {used} {what}"));
            }
        }
        if !below.is_empty() {
            return Err(Error::Conflict(format!(
                "project {project:?} uses more than the new quota allows ({}); nothing would be taken away, \
                 but new requests would be refused: set it anyway with force=true (metalcast quota set --force)",
                below.join(", ")
            )));
        }
    }
    let row =
        db::quotas::QuotaRow { max_nodes: q.max_nodes, max_images: q.max_images, max_image_bytes: q.max_image_bytes };
    db::quotas::set(&mut tx, &project, row).await?;
    tx.commit().await?;
    tracing::info!(%project, ?q, "quota set");
    Ok(q)
}
