//! `metalcast image|keypair|quota ...`: the CLI over `/v1/images`,
//! `/v1/keypairs` and `/v1/projects/{p}/quota`.

use std::path::PathBuf;

use clap::Subcommand;
use metalcast_operator_api::v1::{KeypairCreate, Quota, UploadQuery, Visibility};
use metalcast_operator_api::{Client, Error, ErrorBody};
use serde_json::{Value, json};

use crate::cli_error::{CliError, out};

/// `metalcast image ...`
#[derive(Debug, Subcommand)]
pub enum ImageCmd {
    /// List the images you may see.
    List,
    /// Show one image.
    Show {
        /// Image name.
        image: String,
    },
    /// Upload a signed bundle (checked by the server against its trusted keys).
    Upload {
        /// Image name.
        image: String,
        /// Bundle file (from `metalcast-image build --key ...`).
        bundle: PathBuf,
        /// Owner project (omit for an administrator image, which is public).
        #[arg(long)]
        project: Option<String>,
        /// Visibility (default: private for a project image).
        #[arg(long, value_enum)]
        visibility: Option<Visibility>,
    },
    /// Delete an image (owner project or admin).
    Delete {
        /// Image name.
        image: String,
    },
    /// Change an image's visibility.
    Visibility {
        /// Image name.
        image: String,
        /// New visibility.
        #[arg(value_enum)]
        visibility: Visibility,
    },
    /// Share a `shared` image with a project.
    Share {
        /// Image name.
        image: String,
        /// Project to share with.
        project: String,
    },
    /// Stop sharing an image with a project.
    Unshare {
        /// Image name.
        image: String,
        /// Project.
        project: String,
    },
    /// Save the image's signed manifest (what nodes verify against) to a file.
    Manifest {
        /// Image name.
        image: String,
        /// Output file.
        file: PathBuf,
    },
}

/// `metalcast keypair ...`
#[derive(Debug, Subcommand)]
pub enum KeypairCmd {
    /// List your keys and those shared with your projects.
    List,
    /// Register an OpenSSH public key.
    Add {
        /// Key name (unique per user).
        name: String,
        /// Public key file, e.g. ~/.ssh/id_ed25519.pub.
        file: PathBuf,
        /// Share with this project (you must be a member).
        #[arg(long)]
        project: Option<String>,
    },
    /// Show one of your keys.
    Show {
        /// Key name.
        name: String,
    },
    /// Delete one of your keys.
    Delete {
        /// Key name.
        name: String,
    },
}

/// `metalcast quota ...`
#[derive(Debug, Subcommand)]
pub enum QuotaCmd {
    /// Show a project's quota and usage (members and admins).
    Show {
        /// Project.
        project: String,
    },
    /// Set a project's quota (admin); an omitted limit becomes unlimited.
    Set {
        /// Project.
        project: String,
        /// Most nodes held at once.
        #[arg(long)]
        max_nodes: Option<u64>,
        /// Most images owned.
        #[arg(long)]
        max_images: Option<u64>,
        /// Most MiB of image bundles.
        #[arg(long)]
        max_image_mib: Option<u64>,
        /// Set a limit below what the project uses now (nothing is taken
        /// away; new requests are refused until use is back under).
        #[arg(long)]
        force: bool,
    },
}

/// Why one more image of `size` bytes would not fit `u`'s quota (the server's words).
fn over_quota(u: &metalcast_operator_api::v1::QuotaUsage, size: u64) -> Option<String> {
    if let Some(max) = u.quota.max_images
        && u.images + 1 > max
    {
        return Some(format!("it owns {} of at most {max} images", u.images));
    }
    let size_i = i64::try_from(size).unwrap_or(i64::MAX);
    match u.quota.max_image_bytes {
        Some(max) if u.image_bytes.saturating_add(size_i) > max => {
            Some(format!("{} + {size} bytes of images exceed its limit of {max} bytes", u.image_bytes))
        }
        _ => None,
    }
}

/// Run `metalcast image ...`.
pub async fn run_image(c: &Client, cmd: &ImageCmd) -> Result<Value, CliError> {
    match cmd {
        ImageCmd::List => out(c.images().await?),
        ImageCmd::Show { image } => out(c.image(image).await?),
        ImageCmd::Upload { image, bundle, project, visibility } => {
            std::fs::File::open(bundle)
                .map_err(|err| CliError::Input(format!("cannot open {}: {err}", bundle.display())))?;
            // The server refuses a taken name or a caller without access before it
            // reads the body, and then closes the connection under a streaming
            // client; ask first so those cases get their real error.
            match c.image(image).await {
                Ok(_) => {
                    let msg = format!("image {image:?} already exists");
                    let body = ErrorBody { msg, kind: "DuplicateError".into() };
                    return Err(Error::Api { status: 409, body }.into());
                }
                Err(Error::Api { status: 404, .. }) => {}
                Err(other) => return Err(other.into()),
            }
            // Likewise the project's quota (the server checks the declared length first too).
            if let Some(p) = project {
                let size = std::fs::metadata(bundle).map(|m| m.len()).unwrap_or(0);
                if let Some(why) = over_quota(&c.quota(p).await?, size) {
                    let body = ErrorBody {
                        msg: format!("quota exceeded for project {p:?}: {why}"),
                        kind: "AuthorizationError".into(),
                    };
                    return Err(Error::Api { status: 403, body }.into());
                }
            }
            let query = UploadQuery { project: project.clone(), visibility: *visibility };
            out(c.image_upload(image, &query, bundle).await?)
        }
        ImageCmd::Delete { image } => done(c.image_delete(image).await),
        ImageCmd::Visibility { image, visibility } => done(c.image_set_visibility(image, *visibility).await),
        ImageCmd::Share { image, project } => done(c.image_share(image, project).await),
        ImageCmd::Unshare { image, project } => done(c.image_unshare(image, project).await),
        ImageCmd::Manifest { image, file } => {
            let bytes = c.image_manifest(image).await?;
            std::fs::write(file, &bytes)
                .map_err(|err| CliError::Input(format!("cannot write {}: {err}", file.display())))?;
            Ok(json!({ "manifest": file.display().to_string(), "bytes": bytes.len() }))
        }
    }
}

/// A call that answers nothing: prints nothing.
fn done(r: Result<(), Error>) -> Result<Value, CliError> {
    r?;
    Ok(Value::Null)
}

/// Run `metalcast keypair ...`.
pub async fn run_keypair(c: &Client, cmd: &KeypairCmd) -> Result<Value, CliError> {
    match cmd {
        KeypairCmd::List => out(c.keypairs().await?),
        KeypairCmd::Add { name, file, project } => {
            let key = std::fs::read_to_string(file)
                .map_err(|err| CliError::Input(format!("cannot read {}: {err}", file.display())))?;
            let body =
                KeypairCreate { name: name.clone(), public_key: key.trim().to_string(), project: project.clone() };
            out(c.keypair_create(&body).await?)
        }
        KeypairCmd::Show { name } => out(c.keypair(name).await?),
        KeypairCmd::Delete { name } => done(c.keypair_delete(name).await),
    }
}

/// Run `metalcast quota ...`.
pub async fn run_quota(c: &Client, cmd: &QuotaCmd) -> Result<Value, CliError> {
    match cmd {
        QuotaCmd::Show { project } => out(c.quota(project).await?),
        QuotaCmd::Set { project, max_nodes, max_images, max_image_mib, force } => {
            let limit = |flag: &str, v: Option<u64>| {
                v.map(|n| i64::try_from(n).map_err(|_| CliError::Input(format!("--{flag} {n} is too large"))))
                    .transpose()
            };
            let quota = Quota {
                max_nodes: limit("max-nodes", *max_nodes)?,
                max_images: limit("max-images", *max_images)?,
                max_image_bytes: limit("max-image-mib", max_image_mib.map(|m| m.saturating_mul(1 << 20)))?,
            };
            out(c.quota_set(project, &quota, *force).await?)
        }
    }
}
