//! Per-project quotas (nodes, images, image storage), enforced atomically.
//!
//! Every operation that can push a project over a limit runs in one
//! transaction that first locks the project's row (`SELECT ... FOR UPDATE` on
//! PostgreSQL, a no-op write that takes SQLite's write lock), then counts,
//! then changes. Two racing requests therefore see each other's effect: at
//! most the quota is ever used, never one more.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sqlx::{Any, Row, Transaction};
use utoipa::{OpenApi, ToSchema};

use crate::auth::Caller;
use crate::db::Backend;
use crate::error::ApiError;
use crate::extract::{Body, check_name};
use crate::state::AppState;

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

/// OpenAPI description of these routes (merged into `/v1/openapi.json`).
#[derive(Debug, OpenApi)]
#[openapi(paths(show, set), components(schemas(Quota, QuotaUsage)))]
pub struct QuotasDoc;

/// Routes: `GET|PUT /v1/projects/{project}/quota`.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/projects/{project}/quota", get(show).put(set))
}

/// Lock `project`'s row for the rest of `tx` and fail with 404 when it does not exist.
pub async fn lock_project(tx: &mut Transaction<'_, Any>, backend: Backend, project: &str) -> Result<(), ApiError> {
    let found = match backend {
        Backend::Postgres => sqlx::query("SELECT name FROM projects WHERE name = $1 FOR UPDATE")
            .bind(project)
            .fetch_optional(&mut **tx)
            .await?
            .is_some(),
        // SQLite has no row locks: a no-op write takes the database's write
        // lock now, so the transaction never has to upgrade a read lock later
        // (which fails with SQLITE_BUSY under concurrent writers in WAL mode).
        Backend::Sqlite => {
            sqlx::query("UPDATE projects SET name = name WHERE name = $1")
                .bind(project)
                .execute(&mut **tx)
                .await?
                .rows_affected()
                == 1
        }
    };
    if !found {
        return Err(ApiError::not_found("project", project));
    }
    Ok(())
}

/// The quota of `project` (unlimited when none is set).
pub async fn get_quota<'e, E: sqlx::Executor<'e, Database = Any>>(exec: E, project: &str) -> Result<Quota, ApiError> {
    let row = sqlx::query("SELECT max_nodes, max_images, max_image_bytes FROM quotas WHERE project = $1")
        .bind(project)
        .fetch_optional(exec)
        .await?;
    Ok(match row {
        Some(r) => Quota { max_nodes: r.try_get(0)?, max_images: r.try_get(1)?, max_image_bytes: r.try_get(2)? },
        None => Quota::default(),
    })
}

async fn usage(tx: &mut Transaction<'_, Any>, project: &str) -> Result<(i64, i64, i64), ApiError> {
    let nodes: i64 = sqlx::query("SELECT COUNT(*) FROM nodes WHERE project = $1")
        .bind(project)
        .fetch_one(&mut **tx)
        .await?
        .try_get(0)?;
    // SUM is NUMERIC on PostgreSQL, which sqlx::Any cannot decode: cast it.
    let row =
        sqlx::query("SELECT COUNT(*), CAST(COALESCE(SUM(stored_bytes), 0) AS BIGINT) FROM images WHERE owner = $1")
            .bind(project)
            .fetch_one(&mut **tx)
            .await?;
    let images: i64 = row.try_get(0)?;
    let bytes: i64 = row.try_get(1)?;
    Ok((nodes, images, bytes))
}

/// Within a transaction holding [`lock_project`]: fail unless `project` may take one more node.
pub async fn check_node(tx: &mut Transaction<'_, Any>, project: &str) -> Result<(), ApiError> {
    let q = get_quota(&mut **tx, project).await?;
    if let Some(max) = q.max_nodes {
        let (nodes, _, _) = usage(tx, project).await?;
        if nodes + 1 > max {
            return Err(over_quota(project, format!("it holds {nodes} of at most {max} nodes")));
        }
    }
    Ok(())
}

/// Within a transaction holding [`lock_project`]: fail unless `project` may own one more image of `bytes`.
pub async fn check_image(tx: &mut Transaction<'_, Any>, project: &str, bytes: u64) -> Result<(), ApiError> {
    let q = get_quota(&mut **tx, project).await?;
    let (_, images, used) = usage(tx, project).await?;
    if let Some(max) = q.max_images
        && images + 1 > max
    {
        return Err(over_quota(project, format!("it owns {images} of at most {max} images")));
    }
    if let Some(max) = q.max_image_bytes
        && used.saturating_add(i64::try_from(bytes).unwrap_or(i64::MAX)) > max
    {
        return Err(over_quota(project, format!("{used} + {bytes} bytes of images exceed its limit of {max} bytes")));
    }
    Ok(())
}

fn over_quota(project: &str, why: String) -> ApiError {
    ApiError::Forbidden(format!("quota exceeded for project {project:?}: {why}"))
}

/// Show a project's quota and usage (members and admins).
#[utoipa::path(get, path = "/v1/projects/{project}/quota", responses((status = 200, body = QuotaUsage)))]
async fn show(
    State(st): State<AppState>,
    c: Caller,
    Path(project): Path<String>,
) -> Result<Json<QuotaUsage>, ApiError> {
    check_name("project", &project)?;
    c.require_project(Some(&project))?;
    let mut tx = st.db.pool.begin().await?;
    lock_project(&mut tx, st.db.backend, &project).await?;
    let quota = get_quota(&mut *tx, &project).await?;
    let (nodes, images, image_bytes) = usage(&mut tx, &project).await?;
    tx.commit().await?;
    Ok(Json(QuotaUsage { project, quota, nodes, images, image_bytes }))
}

/// Set a project's quota (admin only). Lowering a limit below current use is
/// allowed: nothing is taken away, new requests are refused.
#[utoipa::path(put, path = "/v1/projects/{project}/quota", request_body = Quota, responses((status = 200, body = Quota)))]
async fn set(
    State(st): State<AppState>,
    c: Caller,
    Path(project): Path<String>,
    Body(q): Body<Quota>,
) -> Result<Json<Quota>, ApiError> {
    c.require_admin()?;
    check_name("project", &project)?;
    for (name, v) in [("max_nodes", q.max_nodes), ("max_images", q.max_images), ("max_image_bytes", q.max_image_bytes)]
    {
        if v.is_some_and(|v| v < 0) {
            return Err(ApiError::BadRequest(format!("{name} must be >= 0 or null")));
        }
    }
    let mut tx = st.db.pool.begin().await?;
    lock_project(&mut tx, st.db.backend, &project).await?;
    sqlx::query("DELETE FROM quotas WHERE project = $1").bind(&project).execute(&mut *tx).await?;
    sqlx::query("INSERT INTO quotas (project, max_nodes, max_images, max_image_bytes) VALUES ($1, $2, $3, $4)")
        .bind(&project)
        .bind(q.max_nodes)
        .bind(q.max_images)
        .bind(q.max_image_bytes)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(%project, ?q, "quota set");
    Ok(Json(q))
}
