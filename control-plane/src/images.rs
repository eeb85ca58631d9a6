//! The image registry: upload signed bundles, list, show, share, delete.
//!
//! An upload streams to a temporary file in the registry directory; the
//! bundle's signature is checked against the server's trusted keys and every
//! chunk against its hash before the image exists for anyone. Only then, in
//! one transaction that also enforces the owner's quota, is the row written
//! and the file renamed into place. A bad upload leaves nothing behind.
//!
//! Visibility follows Nova: `public` (every authenticated user; only an
//! administrator may publish), `private` (the owner project), `shared` (the
//! owner plus named member projects). An image a caller may not see is
//! reported as not existing.

use std::io::Write;

use axum::body::Body as RawBody;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::{OpenApi, ToSchema};

use crate::app::AppState;
use crate::app::error::check_name;
use crate::app::quotas;
use crate::authz::Caller;
use crate::http::ApiError;
use crate::http::Body;

/// Who may see an image (also the CLI's `--visibility` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Every authenticated user.
    Public,
    /// The owner project only.
    Private,
    /// The owner project and its member projects.
    Shared,
}

impl Visibility {
    /// The name used in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Private => "private",
            Visibility::Shared => "shared",
        }
    }

    fn parse(s: &str) -> Result<Self, ApiError> {
        match s {
            "public" => Ok(Visibility::Public),
            "private" => Ok(Visibility::Private),
            "shared" => Ok(Visibility::Shared),
            other => Err(ApiError::Internal(format!("unknown visibility {other:?} in the database").into())),
        }
    }
}

/// A registered image.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImageInfo {
    /// Image name.
    pub name: String,
    /// Owner project; `null` for administrator images.
    pub owner: Option<String>,
    /// Who may see and deploy it.
    pub visibility: Visibility,
    /// Projects a `shared` image is shared with (shown to the owner and admins only).
    pub members: Vec<String>,
    /// Hex root hash of the bundle's chunk table.
    pub root_hash: String,
    /// Bytes of the bundle file.
    pub stored_bytes: i64,
    /// Bytes of the image once extracted.
    pub data_bytes: i64,
    /// Hex public key of the signer.
    pub signer: String,
    /// Uploading user.
    pub uploaded_by: String,
    /// Upload time, unix seconds.
    pub created_at: i64,
}

/// Query of an upload.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadQuery {
    /// Owner project (omit for an administrator image).
    project: Option<String>,
    /// Default: `private` for project images, `public` for administrator images.
    visibility: Option<Visibility>,
}

/// Body of a visibility change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetVisibility {
    /// The new visibility.
    pub visibility: Visibility,
}

/// OpenAPI description of these routes (merged into `/v1/openapi.json`).
#[derive(Debug, OpenApi)]
#[openapi(
    paths(list, show, manifest, upload, remove, set_visibility, add_member, remove_member),
    components(schemas(ImageInfo, Visibility, SetVisibility))
)]
pub struct ImagesDoc;

/// Routes under `/v1/images`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/images", get(list))
        .route("/v1/images/{name}", get(show).delete(remove).put(upload).layer(DefaultBodyLimit::disable()))
        .route("/v1/images/{name}/manifest", get(manifest))
        .route("/v1/images/{name}/visibility", put(set_visibility))
        .route("/v1/images/{name}/members/{project}", put(add_member).delete(remove_member))
}

const COLUMNS: &str = "name, owner, visibility, root_hash, stored_bytes, data_bytes, signer, uploaded_by, created_at";

async fn load(st: &AppState, name: &str) -> Result<Option<ImageInfo>, ApiError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM images WHERE name = $1")))
        .bind(name)
        .fetch_optional(&st.db.pool)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let mut info = from_row(&row)?;
    info.members = sqlx::query("SELECT project FROM image_members WHERE image = $1 ORDER BY project")
        .bind(name)
        .fetch_all(&st.db.pool)
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>(0))
        .collect::<Result<_, _>>()?;
    Ok(Some(info))
}

/// Load an image regardless of who asks (for the server's own use, e.g. the runtime image of reclaim).
pub(crate) async fn load_any(st: &AppState, name: &str) -> Result<Option<ImageInfo>, ApiError> {
    check_name("image", name)?;
    load(st, name).await
}

fn from_row(row: &sqlx::any::AnyRow) -> Result<ImageInfo, ApiError> {
    Ok(ImageInfo {
        name: row.try_get(0)?,
        owner: row.try_get(1)?,
        visibility: Visibility::parse(&row.try_get::<String, _>(2)?)?,
        members: Vec::new(),
        root_hash: row.try_get(3)?,
        stored_bytes: row.try_get(4)?,
        data_bytes: row.try_get(5)?,
        signer: row.try_get(6)?,
        uploaded_by: row.try_get(7)?,
        created_at: row.try_get(8)?,
    })
}

/// Whether `c` may see (and deploy) `img`.
pub fn may_see(c: &Caller, img: &ImageInfo) -> bool {
    if c.user.is_none() {
        return false;
    }
    c.admin
        || img.visibility == Visibility::Public
        || img.owner.as_deref().is_some_and(|o| c.projects.contains(o))
        || (img.visibility == Visibility::Shared && img.members.iter().any(|m| c.projects.contains(m)))
}

/// Whether `c` may change `img` (owner project member or admin).
fn may_manage(c: &Caller, img: &ImageInfo) -> bool {
    c.admin || img.owner.as_deref().is_some_and(|o| c.projects.contains(o))
}

/// Load an image the caller may see; otherwise 404 (its existence is not revealed).
pub async fn visible(st: &AppState, c: &Caller, name: &str) -> Result<ImageInfo, ApiError> {
    check_name("image", name)?;
    if c.user.is_none() {
        return Err(ApiError::Unauthenticated);
    }
    match load(st, name).await? {
        Some(img) if may_see(c, &img) => Ok(img),
        _ => Err(ApiError::not_found("image", name)),
    }
}

fn redact_members(c: &Caller, mut img: ImageInfo) -> ImageInfo {
    if !may_manage(c, &img) {
        img.members.clear();
    }
    img
}

/// List the images the caller may see.
#[utoipa::path(get, path = "/v1/images", responses((status = 200, body = [ImageInfo])))]
async fn list(State(st): State<AppState>, c: Caller) -> Result<Json<Vec<ImageInfo>>, ApiError> {
    if c.user.is_none() {
        return Err(ApiError::Unauthenticated);
    }
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM images ORDER BY name")))
        .fetch_all(&st.db.pool)
        .await?;
    let members = sqlx::query("SELECT image, project FROM image_members").fetch_all(&st.db.pool).await?;
    let mut out = Vec::new();
    for row in &rows {
        let mut img = from_row(row)?;
        for m in &members {
            if m.try_get::<String, _>(0)? == img.name {
                img.members.push(m.try_get(1)?);
            }
        }
        img.members.sort();
        if may_see(&c, &img) {
            out.push(redact_members(&c, img));
        }
    }
    Ok(Json(out))
}

/// Show one image.
#[utoipa::path(get, path = "/v1/images/{name}", responses((status = 200, body = ImageInfo)))]
async fn show(State(st): State<AppState>, c: Caller, Path(name): Path<String>) -> Result<Json<ImageInfo>, ApiError> {
    let img = visible(&st, &c, &name).await?;
    Ok(Json(redact_members(&c, img)))
}

/// The image's standalone signed manifest (what nodes verify chunks against).
#[utoipa::path(get, path = "/v1/images/{name}/manifest",
    responses((status = 200, description = "signed manifest bytes", content_type = "application/octet-stream")))]
async fn manifest(State(st): State<AppState>, c: Caller, Path(name): Path<String>) -> Result<Response, ApiError> {
    visible(&st, &c, &name).await?;
    let path = st.registry.bundle_path(&name);
    let bytes = tokio::task::spawn_blocking(move || {
        metalcast_image::Bundle::open(&path).map(|b| b.signed_manifest().to_bytes())
    })
    .await
    .map_err(|e| ApiError::Internal(Box::new(e)))?
    .map_err(|e| ApiError::Internal(Box::new(e)))?;
    Ok(([(CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

/// Upload a signed bundle as image `name`. The body is the bundle file.
#[utoipa::path(put, path = "/v1/images/{name}",
    params(("project" = Option<String>, Query, description = "owner project (omit: administrator image)"),
           ("visibility" = Option<Visibility>, Query, description = "public, private or shared")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = ImageInfo), (status = 409), (status = 413), (status = 422)))]
async fn upload(
    State(st): State<AppState>,
    c: Caller,
    Path(name): Path<String>,
    Query(q): Query<UploadQuery>,
    body: RawBody,
) -> Result<(StatusCode, Json<ImageInfo>), ApiError> {
    check_name("image", &name)?;
    let user = c.user.clone().ok_or(ApiError::Unauthenticated)?;
    match &q.project {
        Some(p) => {
            check_name("project", p)?;
            c.require_project(Some(p))?;
        }
        None => c.require_admin()?,
    }
    let visibility = q.visibility.unwrap_or(if q.project.is_some() { Visibility::Private } else { Visibility::Public });
    if visibility == Visibility::Public {
        c.require_admin().map_err(|_| ApiError::Forbidden("only an administrator may publish an image".into()))?;
    }
    let reg = st.registry.clone();
    if reg.trusted.is_empty() {
        return Err(ApiError::Unprocessable(
            "this server trusts no image signing keys (start it with --trusted-key)".into(),
        ));
    }
    if load(&st, &name).await?.is_some() {
        return Err(ApiError::Conflict(format!("image {name:?} already exists")));
    }
    reg.ensure_dirs().map_err(|e| ApiError::Internal(Box::new(e)))?;
    let tmp = tempfile::Builder::new()
        .prefix(".upload-")
        .tempfile_in(reg.images_dir())
        .map_err(|e| ApiError::Internal(Box::new(e)))?;

    // Stream the body to the temporary file, bounded.
    let mut file = tokio::fs::File::from_std(tmp.reopen().map_err(|e| ApiError::Internal(Box::new(e)))?);
    let mut stream = body.into_data_stream();
    let mut len = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| ApiError::BadRequest("upload interrupted".into()))?;
        len += chunk.len() as u64;
        if len > reg.max_upload {
            return Err(ApiError::TooLarge);
        }
        tokio::io::AsyncWriteExt::write_all(&mut file, &chunk).await.map_err(|e| ApiError::Internal(Box::new(e)))?;
    }
    tokio::io::AsyncWriteExt::flush(&mut file).await.map_err(|e| ApiError::Internal(Box::new(e)))?;
    drop(file);

    // Check structure, signature and every chunk off the async threads.
    let (tmp, signer, root_hash, data_bytes) = tokio::task::spawn_blocking(move || check_bundle(tmp, &reg.trusted))
        .await
        .map_err(|e| ApiError::Internal(Box::new(e)))??;

    let img = ImageInfo {
        name: name.clone(),
        owner: q.project.clone(),
        visibility,
        members: Vec::new(),
        root_hash,
        stored_bytes: i64::try_from(len).unwrap_or(i64::MAX),
        data_bytes,
        signer,
        uploaded_by: user,
        created_at: crate::now(),
    };
    let mut tx = st.db.pool.begin().await?;
    if let Some(p) = &q.project {
        quotas::lock_project(&mut tx, st.db.backend, p).await?;
        quotas::check_image(&mut tx, p, len).await?;
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO images ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    )))
    .bind(&img.name)
    .bind(&img.owner)
    .bind(img.visibility.as_str())
    .bind(&img.root_hash)
    .bind(img.stored_bytes)
    .bind(img.data_bytes)
    .bind(&img.signer)
    .bind(&img.uploaded_by)
    .bind(img.created_at)
    .execute(&mut *tx)
    .await
    .map_err(|e| match ApiError::from(e) {
        ApiError::Conflict(_) => ApiError::Conflict(format!("image {name:?} already exists")),
        other => other,
    })?;
    // File first, then commit: a failed commit removes the file again; a
    // committed row always has its file.
    let dest = st.registry.bundle_path(&name);
    tmp.persist(&dest).map_err(|e| ApiError::Internal(Box::new(e.error)))?;
    if let Err(e) = tx.commit().await {
        let _ = std::fs::remove_file(&dest);
        return Err(e.into());
    }
    tracing::info!(image = %name, owner = ?img.owner, bytes = len, "image registered");
    Ok((StatusCode::CREATED, Json(img)))
}

/// Open, authenticate and fully verify an uploaded bundle.
fn check_bundle(
    tmp: tempfile::NamedTempFile,
    trusted: &[metalcast_image::PublicKey],
) -> Result<(tempfile::NamedTempFile, String, String, i64), ApiError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| ApiError::Unprocessable(format!("{what}: {e}"));
    let bundle = metalcast_image::Bundle::open(tmp.path()).map_err(|e| bad("not a valid image bundle", &e))?;
    let signer =
        trusted.iter().find(|k| bundle.verify_signature(std::slice::from_ref(*k), false).is_ok()).ok_or_else(|| {
            match bundle.verify_signature(trusted, false) {
                Err(e) => bad("bundle signature not accepted", &e),
                Ok(()) => ApiError::Unprocessable("bundle signature not accepted".into()),
            }
        })?;
    let report =
        bundle.verify_chunks(&indicatif::ProgressBar::hidden()).map_err(|e| bad("bundle cannot be verified", &e))?;
    if let Some(first) = report.bad_chunks.first() {
        return Err(ApiError::Unprocessable(format!(
            "bundle has {} corrupt chunk(s), first: {first}",
            report.bad_chunks.len()
        )));
    }
    let root = bundle.manifest.root_hash.clone();
    let data = i64::try_from(bundle.manifest.total_size()).unwrap_or(i64::MAX);
    let mut f = tmp.as_file();
    f.flush().map_err(|e| ApiError::Internal(Box::new(e)))?;
    f.sync_all().map_err(|e| ApiError::Internal(Box::new(e)))?;
    Ok((tmp, signer.to_hex(), root, data))
}

/// Delete an image (owner project member or admin).
#[utoipa::path(delete, path = "/v1/images/{name}", responses((status = 200)))]
async fn remove(State(st): State<AppState>, c: Caller, Path(name): Path<String>) -> Result<Json<()>, ApiError> {
    let img = visible(&st, &c, &name).await?;
    if !may_manage(&c, &img) {
        return Err(c.denied("only the owner project or an administrator may delete an image").into());
    }
    let mut tx = st.db.pool.begin().await?;
    sqlx::query("DELETE FROM image_members WHERE image = $1").bind(&name).execute(&mut *tx).await?;
    let res = sqlx::query("DELETE FROM images WHERE name = $1").bind(&name).execute(&mut *tx).await?;
    if res.rows_affected() == 0 {
        return Err(ApiError::not_found("image", &name));
    }
    tx.commit().await?;
    if let Err(e) = std::fs::remove_file(st.registry.bundle_path(&name)) {
        tracing::warn!(image = %name, error = %e, "image row deleted but its bundle file could not be removed");
    }
    tracing::info!(image = %name, "image deleted");
    Ok(Json(()))
}

/// Change an image's visibility (publishing needs an administrator).
#[utoipa::path(put, path = "/v1/images/{name}/visibility", request_body = SetVisibility, responses((status = 200)))]
async fn set_visibility(
    State(st): State<AppState>,
    c: Caller,
    Path(name): Path<String>,
    Body(SetVisibility { visibility }): Body<SetVisibility>,
) -> Result<Json<()>, ApiError> {
    let img = visible(&st, &c, &name).await?;
    if !may_manage(&c, &img) {
        return Err(c.denied("only the owner project or an administrator may change an image").into());
    }
    if visibility == Visibility::Public {
        c.require_admin().map_err(|_| ApiError::Forbidden("only an administrator may publish an image".into()))?;
    }
    if visibility != Visibility::Public && img.owner.is_none() {
        return Err(ApiError::Unprocessable("an administrator image without owner project must stay public".into()));
    }
    sqlx::query("UPDATE images SET visibility = $1 WHERE name = $2")
        .bind(visibility.as_str())
        .bind(&name)
        .execute(&st.db.pool)
        .await?;
    Ok(Json(()))
}

async fn member_change(st: &AppState, c: &Caller, name: &str, project: &str) -> Result<ImageInfo, ApiError> {
    let img = visible(st, c, name).await?;
    check_name("project", project)?;
    if !may_manage(c, &img) {
        return Err(c.denied("only the owner project or an administrator may share an image").into());
    }
    if img.visibility != Visibility::Shared {
        return Err(ApiError::Unprocessable(format!(
            "image {name:?} is {}; set its visibility to shared first",
            img.visibility.as_str()
        )));
    }
    Ok(img)
}

/// Share an image with a project.
#[utoipa::path(put, path = "/v1/images/{name}/members/{project}", responses((status = 200)))]
async fn add_member(
    State(st): State<AppState>,
    c: Caller,
    Path((name, project)): Path<(String, String)>,
) -> Result<Json<()>, ApiError> {
    let img = member_change(&st, &c, &name, &project).await?;
    if img.members.contains(&project) {
        return Ok(Json(()));
    }
    let exists =
        sqlx::query("SELECT 1 FROM projects WHERE name = $1").bind(&project).fetch_optional(&st.db.pool).await?;
    if exists.is_none() {
        return Err(ApiError::not_found("project", &project));
    }
    sqlx::query("INSERT INTO image_members (image, project) VALUES ($1, $2)")
        .bind(&name)
        .bind(&project)
        .execute(&st.db.pool)
        .await?;
    Ok(Json(()))
}

/// Stop sharing an image with a project.
#[utoipa::path(delete, path = "/v1/images/{name}/members/{project}", responses((status = 200)))]
async fn remove_member(
    State(st): State<AppState>,
    c: Caller,
    Path((name, project)): Path<(String, String)>,
) -> Result<Json<()>, ApiError> {
    member_change(&st, &c, &name, &project).await?;
    let res = sqlx::query("DELETE FROM image_members WHERE image = $1 AND project = $2")
        .bind(&name)
        .bind(&project)
        .execute(&st.db.pool)
        .await?;
    if res.rows_affected() == 0 {
        return Err(ApiError::NotFound(format!("image {name:?} is not shared with project {project:?}")));
    }
    Ok(Json(()))
}
