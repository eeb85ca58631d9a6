//! `metalcast image|keypair|quota ...`: the CLI over `/v1/images`,
//! `/v1/keypairs` and `/v1/projects/{p}/quota`.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::{Value, json};

use crate::cli::{CliError, Client, ReqBody, urlencode as e};
use metalcast_control_plane::app::images::Visibility;

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
    },
}

/// Run `metalcast image ...`.
pub async fn run_image(c: &Client, cmd: &ImageCmd) -> Result<Value, CliError> {
    match cmd {
        ImageCmd::List => c.call("GET", "/v1/images", None).await,
        ImageCmd::Show { image } => c.call("GET", &format!("/v1/images/{}", e(image)), None).await,
        ImageCmd::Upload { image, bundle, project, visibility } => {
            let file = tokio::fs::File::open(bundle)
                .await
                .map_err(|err| CliError::Input(format!("cannot open {}: {err}", bundle.display())))?;
            let len = file
                .metadata()
                .await
                .map_err(|err| CliError::Input(format!("cannot stat {}: {err}", bundle.display())))?
                .len();
            let mut query = Vec::new();
            if let Some(p) = project {
                query.push(format!("project={}", e(p)));
            }
            if let Some(v) = visibility {
                query.push(format!("visibility={}", v.as_str()));
            }
            let q = if query.is_empty() { String::new() } else { format!("?{}", query.join("&")) };
            // The server refuses a taken name or a caller without access before it
            // reads the body, and then closes the connection under a streaming
            // client; ask first so those cases get their real error.
            match c.call("GET", &format!("/v1/images/{}", e(image)), None).await {
                Ok(_) => {
                    return Err(CliError::Api { status: 409, msg: format!("image {image:?} already exists") });
                }
                Err(CliError::Api { status: 404, .. }) => {}
                Err(other) => return Err(other),
            }
            let path = format!("/v1/images/{}{q}", e(image));
            c.send("PUT", &path, ReqBody::File(file, len)).await.map(|(v, _)| v)
        }
        ImageCmd::Delete { image } => c.call("DELETE", &format!("/v1/images/{}", e(image)), None).await,
        ImageCmd::Visibility { image, visibility } => {
            let body = json!({ "visibility": visibility.as_str() });
            c.call("PUT", &format!("/v1/images/{}/visibility", e(image)), Some(body)).await
        }
        ImageCmd::Share { image, project } => {
            c.call("PUT", &format!("/v1/images/{}/members/{}", e(image), e(project)), None).await
        }
        ImageCmd::Unshare { image, project } => {
            c.call("DELETE", &format!("/v1/images/{}/members/{}", e(image), e(project)), None).await
        }
        ImageCmd::Manifest { image, file } => {
            let (_, bytes) = c.send("GET", &format!("/v1/images/{}/manifest", e(image)), ReqBody::Empty).await?;
            std::fs::write(file, &bytes)
                .map_err(|err| CliError::Input(format!("cannot write {}: {err}", file.display())))?;
            Ok(json!({ "manifest": file.display().to_string(), "bytes": bytes.len() }))
        }
    }
}

/// Run `metalcast keypair ...`.
pub async fn run_keypair(c: &Client, cmd: &KeypairCmd) -> Result<Value, CliError> {
    match cmd {
        KeypairCmd::List => c.call("GET", "/v1/keypairs", None).await,
        KeypairCmd::Add { name, file, project } => {
            let key = std::fs::read_to_string(file)
                .map_err(|err| CliError::Input(format!("cannot read {}: {err}", file.display())))?;
            let body = json!({ "name": name, "public_key": key.trim(), "project": project });
            c.call("POST", "/v1/keypairs", Some(body)).await
        }
        KeypairCmd::Show { name } => c.call("GET", &format!("/v1/keypairs/{}", e(name)), None).await,
        KeypairCmd::Delete { name } => c.call("DELETE", &format!("/v1/keypairs/{}", e(name)), None).await,
    }
}

/// Run `metalcast quota ...`.
pub async fn run_quota(c: &Client, cmd: &QuotaCmd) -> Result<Value, CliError> {
    match cmd {
        QuotaCmd::Show { project } => c.call("GET", &format!("/v1/projects/{}/quota", e(project)), None).await,
        QuotaCmd::Set { project, max_nodes, max_images, max_image_mib } => {
            let bytes = max_image_mib.map(|m| m.saturating_mul(1 << 20));
            let body = json!({ "max_nodes": max_nodes, "max_images": max_images, "max_image_bytes": bytes });
            c.call("PUT", &format!("/v1/projects/{}/quota", e(project)), Some(body)).await
        }
    }
}
