//! The image registry: upload signed bundles, list, show, share, delete.
//!
//! An upload streams to a temporary file in the registry directory; the
//! bundle's signature is checked against the server's trusted keys and every
//! chunk against its hash before the image exists for anyone. Only then, in
//! one transaction that also enforces the owner's quota, is the row written
//! and the file renamed into place. A bad upload leaves nothing behind.
//!
//! Visibility follows Nova (the rules are in `authz`): `public` (every
//! authenticated user; only an administrator may publish), `private` (the
//! owner project), `shared` (the owner plus named member projects). An image
//! a caller may not see is reported as not existing.

use std::io::Write;

use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::error::{Error, Result, check_carrier_owner, check_name, check_object_name, duplicate};
use super::quotas;
use crate::authz::{Action, Actor, Caller, Resource, authorize};
use crate::db;

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

    fn parse(s: &str) -> Result<Self> {
        match s {
            "public" => Ok(Visibility::Public),
            "private" => Ok(Visibility::Private),
            "shared" => Ok(Visibility::Shared),
            other => Err(Error::internal(format!("unknown visibility {other:?} in the database"))),
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

/// Body of a visibility change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetVisibility {
    /// The new visibility.
    pub visibility: Visibility,
}

impl ImageInfo {
    fn from_row(r: db::images::ImageRow, members: Vec<String>) -> Result<Self> {
        Ok(ImageInfo {
            visibility: Visibility::parse(&r.visibility)?,
            name: r.name,
            owner: r.owner,
            members,
            root_hash: r.root_hash,
            stored_bytes: r.stored_bytes,
            data_bytes: r.data_bytes,
            signer: r.signer,
            uploaded_by: r.uploaded_by,
            created_at: r.created_at,
        })
    }

    fn resource(&self) -> Resource<'_> {
        let shared: &[String] = if self.visibility == Visibility::Shared { &self.members } else { &[] };
        Resource::Image {
            owner: self.owner.as_deref(),
            public: self.visibility == Visibility::Public,
            shared_with: shared,
        }
    }
}

async fn load(st: &AppState, name: &str) -> Result<Option<ImageInfo>> {
    let Some(row) = db::images::get(&st.db.pool, name).await? else { return Ok(None) };
    let members = db::images::members(&st.db.pool, name).await?;
    Ok(Some(ImageInfo::from_row(row, members)?))
}

/// Load an image regardless of who asks (for the server's own use, e.g. the runtime image of reclaim).
pub async fn load_any(st: &AppState, name: &str) -> Result<Option<ImageInfo>> {
    check_object_name("image", name)?;
    load(st, name).await
}

/// Whether `c` may see (and deploy) `img`.
pub fn may_see(c: &Caller, img: &ImageInfo) -> bool {
    authorize(Actor::Caller(c), Action::SeeImage, img.resource()).is_ok()
}

/// Fails unless `c` may change `img` (owner project member or admin), with `msg`.
fn require_manage(c: &Caller, img: &ImageInfo, msg: &str) -> Result<()> {
    authorize(Actor::Caller(c), Action::ManageImage, img.resource()).map_err(|_| c.denied(msg).into())
}

/// Fails unless `c` may publish an image.
fn require_publish(c: &Caller) -> Result<()> {
    c.require_admin().map_err(|_| Error::Forbidden("only an administrator may publish an image".into()))
}

/// Load an image the caller may see; otherwise 404 (its existence is not revealed).
pub async fn visible(st: &AppState, c: &Caller, name: &str) -> Result<ImageInfo> {
    check_object_name("image", name)?;
    if c.user.is_none() {
        return Err(Error::Unauthenticated);
    }
    match load(st, name).await? {
        Some(img) if may_see(c, &img) => Ok(img),
        _ => Err(Error::not_found("image", name)),
    }
}

fn redact_members(c: &Caller, mut img: ImageInfo) -> ImageInfo {
    if require_manage(c, &img, "").is_err() {
        img.members.clear();
    }
    img
}

/// The images the caller may see.
pub async fn list(st: &AppState, c: &Caller) -> Result<Vec<ImageInfo>> {
    if c.user.is_none() {
        return Err(Error::Unauthenticated);
    }
    let rows = db::images::all(&st.db.pool).await?;
    let shares = db::images::all_members(&st.db.pool).await?;
    let mut out = Vec::new();
    for row in rows {
        let mut members: Vec<String> = shares.iter().filter(|(i, _)| *i == row.name).map(|(_, p)| p.clone()).collect();
        members.sort();
        let img = ImageInfo::from_row(row, members)?;
        if may_see(c, &img) {
            out.push(redact_members(c, img));
        }
    }
    Ok(out)
}

/// One image the caller may see.
pub async fn show(st: &AppState, c: &Caller, name: &str) -> Result<ImageInfo> {
    let img = visible(st, c, name).await?;
    Ok(redact_members(c, img))
}

/// The image's standalone signed manifest (what nodes verify chunks against).
pub async fn manifest(st: &AppState, c: &Caller, name: &str) -> Result<Vec<u8>> {
    visible(st, c, name).await?;
    let path = st.registry.bundle_path(name);
    tokio::task::spawn_blocking(move || metalcast_image::Bundle::open(&path).map(|b| b.signed_manifest().to_bytes()))
        .await
        .map_err(Error::internal)?
        .map_err(Error::internal)
}

/// Stores the bundle in `body` as image `name` of `project` (`None`: an
/// administrator image) after checking its signature and every chunk.
pub async fn upload<S, B, E>(
    st: &AppState,
    c: &Caller,
    name: &str,
    project: Option<String>,
    visibility: Option<Visibility>,
    declared: Option<u64>,
    mut body: S,
) -> Result<ImageInfo>
where
    S: Stream<Item = std::result::Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
{
    check_object_name("image", name)?;
    let user = c.user.clone().ok_or(Error::Unauthenticated)?;
    match &project {
        Some(p) => {
            check_name("project", p)?;
            c.require_project(Some(p))?;
        }
        None => c.require_admin()?,
    }
    check_carrier_owner("image", name, project.as_deref())?;
    let visibility = visibility.unwrap_or(if project.is_some() { Visibility::Private } else { Visibility::Public });
    if visibility == Visibility::Public {
        require_publish(c)?;
    }
    let reg = st.registry.clone();
    if reg.trusted.is_empty() {
        return Err(Error::Unprocessable(
            "this server trusts no image signing keys (start it with --trusted-key)".into(),
        ));
    }
    if load(st, name).await?.is_some() {
        return Err(Error::Duplicate(format!("image {name:?} already exists")));
    }
    // Size limits before a byte is read: the declared length (Content-Length) against the
    // server's limit and the project's quota; while reading, the bytes the quota has left.
    if declared.is_some_and(|d| d > reg.max_upload) {
        return Err(Error::TooLarge);
    }
    let left = match &project {
        Some(p) => quotas::precheck_image(st, p, declared.unwrap_or(0)).await?,
        None => None,
    };
    reg.ensure_dirs().map_err(Error::internal)?;
    let tmp = tempfile::Builder::new().prefix(".upload-").tempfile_in(reg.images_dir()).map_err(Error::internal)?;

    // Stream the body to the temporary file, bounded.
    let mut file = tokio::fs::File::from_std(tmp.reopen().map_err(Error::internal)?);
    let mut len = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|_| Error::BadRequest("upload interrupted".into()))?;
        let chunk = chunk.as_ref();
        len += chunk.len() as u64;
        if len > reg.max_upload {
            return Err(Error::TooLarge);
        }
        if let (Some(left), Some(p)) = (left, &project)
            && len > left
        {
            return Err(quotas::upload_over_quota(p, left));
        }
        tokio::io::AsyncWriteExt::write_all(&mut file, chunk).await.map_err(Error::internal)?;
    }
    tokio::io::AsyncWriteExt::flush(&mut file).await.map_err(Error::internal)?;
    drop(file);

    // Check structure, signature and every chunk off the async threads.
    let (tmp, signer, root_hash, data_bytes) =
        tokio::task::spawn_blocking(move || check_bundle(tmp, &reg.trusted)).await.map_err(Error::internal)??;

    let row = db::images::ImageRow {
        name: name.to_string(),
        owner: project.clone(),
        visibility: visibility.as_str().to_string(),
        root_hash,
        stored_bytes: i64::try_from(len).unwrap_or(i64::MAX),
        data_bytes,
        signer,
        uploaded_by: user,
        created_at: crate::now(),
    };
    let mut tx = st.db.writer.begin().await?;
    if let Some(p) = &project {
        quotas::lock_project(&mut tx, st.db.backend, p).await?;
        quotas::check_image(&mut tx, p, len).await?;
    }
    duplicate(db::images::insert(&mut tx, &row).await, || format!("image {name:?} already exists"))?;
    // File first, then commit: a failed commit removes the file again; a
    // committed row always has its file.
    let dest = st.registry.bundle_path(name);
    tmp.persist(&dest).map_err(|e| Error::internal(e.error))?;
    if let Err(e) = tx.commit().await {
        let _ = std::fs::remove_file(&dest);
        return Err(e.into());
    }
    tracing::info!(image = %name, owner = ?row.owner, bytes = len, "image registered");
    ImageInfo::from_row(row, Vec::new())
}

/// Open, authenticate and fully verify an uploaded bundle.
fn check_bundle(
    tmp: tempfile::NamedTempFile,
    trusted: &[metalcast_image::PublicKey],
) -> Result<(tempfile::NamedTempFile, String, String, i64)> {
    let bad = |what: &str, e: &dyn std::fmt::Display| Error::Unprocessable(format!("{what}: {e}"));
    let bundle = metalcast_image::Bundle::open(tmp.path()).map_err(|e| bad("not a valid image bundle", &e))?;
    let signer =
        trusted.iter().find(|k| bundle.verify_signature(std::slice::from_ref(*k), false).is_ok()).ok_or_else(|| {
            match bundle.verify_signature(trusted, false) {
                Err(e) => bad("bundle signature not accepted", &e),
                Ok(()) => Error::Unprocessable("bundle signature not accepted".into()),
            }
        })?;
    let report =
        bundle.verify_chunks(&indicatif::ProgressBar::hidden()).map_err(|e| bad("bundle cannot be verified", &e))?;
    if let Some(first) = report.bad_chunks.first() {
        return Err(Error::Unprocessable(format!(
            "bundle has {} corrupt chunk(s), first: {first}",
            report.bad_chunks.len()
        )));
    }
    let root = bundle.manifest.root_hash.clone();
    let data = i64::try_from(bundle.manifest.total_size()).unwrap_or(i64::MAX);
    let mut f = tmp.as_file();
    f.flush().map_err(Error::internal)?;
    f.sync_all().map_err(Error::internal)?;
    Ok((tmp, signer.to_hex(), root, data))
}

/// Deletes an image (owner project member or admin).
pub async fn delete(st: &AppState, c: &Caller, name: &str) -> Result<()> {
    let img = visible(st, c, name).await?;
    require_manage(c, &img, "only the owner project or an administrator may delete an image")?;
    if !db::images::delete(&st.db.writer, name).await? {
        return Err(Error::not_found("image", name));
    }
    if let Err(e) = std::fs::remove_file(st.registry.bundle_path(name)) {
        tracing::warn!(image = %name, error = %e, "image row deleted but its bundle file could not be removed");
    }
    tracing::info!(image = %name, "image deleted");
    Ok(())
}

/// Changes an image's visibility (publishing needs an administrator).
pub async fn set_visibility(st: &AppState, c: &Caller, name: &str, visibility: Visibility) -> Result<()> {
    let img = visible(st, c, name).await?;
    require_manage(c, &img, "only the owner project or an administrator may change an image")?;
    if visibility == Visibility::Public {
        require_publish(c)?;
    }
    if visibility != Visibility::Public && img.owner.is_none() {
        return Err(Error::Unprocessable("an administrator image without owner project must stay public".into()));
    }
    Ok(db::images::set_visibility(&st.db.writer, name, visibility.as_str()).await?)
}

async fn member_change(st: &AppState, c: &Caller, name: &str, project: &str) -> Result<ImageInfo> {
    let img = visible(st, c, name).await?;
    check_name("project", project)?;
    require_manage(c, &img, "only the owner project or an administrator may share an image")?;
    if img.visibility != Visibility::Shared {
        return Err(Error::Unprocessable(format!(
            "image {name:?} is {}; set its visibility to shared first",
            img.visibility.as_str()
        )));
    }
    Ok(img)
}

/// Shares an image with a project.
pub async fn add_member(st: &AppState, c: &Caller, name: &str, project: &str) -> Result<()> {
    let img = member_change(st, c, name, project).await?;
    if img.members.iter().any(|m| m == project) {
        return Ok(());
    }
    if !db::projects::exists(&st.db.pool, project).await? {
        return Err(Error::not_found("project", project));
    }
    Ok(db::images::add_member(&st.db.writer, name, project).await?)
}

/// Stops sharing an image with a project.
pub async fn remove_member(st: &AppState, c: &Caller, name: &str, project: &str) -> Result<()> {
    member_change(st, c, name, project).await?;
    if !db::images::remove_member(&st.db.writer, name, project).await? {
        return Err(Error::NotFound(format!("image {name:?} is not shared with project {project:?}")));
    }
    Ok(())
}
