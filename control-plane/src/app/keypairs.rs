//! SSH keypairs: public keys a user registers so that deployed operating
//! systems let them in (handed to cloud-init through the metadata service).
//!
//! A keypair belongs to its user; it may also be shared with one of the
//! user's projects, and then every member of that project can use it in a
//! deployment. Keys are parsed with the `ssh-key` crate (RustCrypto), so a
//! malformed key is refused with the parser's reason and the stored
//! fingerprint is the one `ssh-keygen -l` prints.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::error::{Error, Result, check_name, duplicate};
use crate::authz::{Action, Actor, Caller, Resource, authorize};
use crate::db;

/// Most bytes of an OpenSSH public key line we accept.
const MAX_KEY_LEN: usize = 16 * 1024;

/// Request to register a public key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeypairCreate {
    /// Name, unique per user.
    pub name: String,
    /// One OpenSSH public key line, e.g. `ssh-ed25519 AAAA... comment`.
    pub public_key: String,
    /// Share with this project (the caller must be a member).
    #[serde(default)]
    pub project: Option<String>,
}

/// A registered public key.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Keypair {
    /// Owning user.
    pub user: String,
    /// Name.
    pub name: String,
    /// Project it is shared with.
    pub project: Option<String>,
    /// The public key line as stored (normalised by the parser).
    pub public_key: String,
    /// `SHA256:...` fingerprint.
    pub fingerprint: String,
    /// Creation time, unix seconds.
    pub created_at: i64,
}

impl From<db::keypairs::KeypairRow> for Keypair {
    fn from(r: db::keypairs::KeypairRow) -> Self {
        Keypair {
            user: r.owner_user,
            name: r.name,
            project: r.project,
            public_key: r.public_key,
            fingerprint: r.fingerprint,
            created_at: r.created_at,
        }
    }
}

/// Parse and normalise an OpenSSH public key line; returns `(line, fingerprint)`.
pub fn parse_public_key(line: &str) -> Result<(String, String)> {
    let line = line.trim();
    if line.len() > MAX_KEY_LEN {
        return Err(Error::BadRequest(format!("public_key is longer than {MAX_KEY_LEN} bytes")));
    }
    if line.contains(['\n', '\r']) {
        return Err(Error::BadRequest("public_key must be a single line".into()));
    }
    let key = ssh_key::PublicKey::from_openssh(line)
        .map_err(|e| Error::BadRequest(format!("public_key is not an OpenSSH public key: {e}")))?;
    let text = key.to_openssh().map_err(|e| Error::BadRequest(format!("public_key cannot be encoded: {e}")))?;
    Ok((text, key.fingerprint(ssh_key::HashAlg::Sha256).to_string()))
}

/// The keys the caller may use: its own and those shared with its projects.
pub async fn usable(st: &AppState, c: &Caller) -> Result<Vec<Keypair>> {
    super::tokens::user(c)?;
    Ok(db::keypairs::all(&st.db.pool)
        .await?
        .into_iter()
        .filter(|k| {
            let r = Resource::Keypair { owner: &k.owner_user, project: k.project.as_deref() };
            authorize(Actor::Caller(c), Action::UseKeypair, r).is_ok()
        })
        .map(Keypair::from)
        .collect())
}

/// Registers a public key for the caller, optionally shared with one of its projects.
pub async fn create(st: &AppState, c: &Caller, req: KeypairCreate) -> Result<Keypair> {
    let user = super::tokens::user(c)?.to_string();
    check_name("keypair", &req.name)?;
    if let Some(p) = &req.project {
        check_name("project", p)?;
        authorize(Actor::Caller(c), Action::ShareKeypair, Resource::Project(Some(p)))?;
    }
    let (public_key, fingerprint) = parse_public_key(&req.public_key)?;
    let row = db::keypairs::KeypairRow {
        owner_user: user,
        name: req.name,
        project: req.project,
        public_key,
        fingerprint,
        created_at: crate::now(),
    };
    duplicate(db::keypairs::insert(&st.db.writer, &row).await, || {
        format!("you already have a keypair named {:?}", row.name)
    })?;
    Ok(row.into())
}

/// One of the caller's own keys.
pub async fn show(st: &AppState, c: &Caller, name: &str) -> Result<Keypair> {
    let user = super::tokens::user(c)?;
    check_name("keypair", name)?;
    db::keypairs::get(&st.db.pool, user, name)
        .await?
        .map(Keypair::from)
        .ok_or_else(|| Error::not_found("keypair", name))
}

/// Deletes one of the caller's own keys.
pub async fn delete(st: &AppState, c: &Caller, name: &str) -> Result<()> {
    let user = super::tokens::user(c)?;
    check_name("keypair", name)?;
    if !db::keypairs::delete(&st.db.writer, user, name).await? {
        return Err(Error::not_found("keypair", name));
    }
    Ok(())
}

#[cfg(test)]
mod unit {
    use super::*;

    /// What `ssh-keygen -lf` prints for the key below.
    const FP: &str = "SHA256:SYh/06k3mCTHwvvgLzGC4I2R8RYnBiy9B9lPsjv94wo";

    #[test]
    fn parses_and_fingerprints_a_real_key() {
        // Generated with `ssh-keygen -t ed25519 -N '' -C test`.
        let line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDo+XGOeX+3vjzikf9qkLbyd736n0DaIyWea5yDqgTHb test";
        let (text, fp) = parse_public_key(line).expect("valid key");
        assert!(text.starts_with("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDo+XGOeX+3vjzikf9qkLbyd736n0DaIyWea5yDqgTHb"));
        assert_eq!(fp, FP);
    }

    #[test]
    fn refuses_garbage() {
        for bad in ["", "ssh-ed25519", "ssh-ed25519 !!!!", "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIOMqq", "a\nb"] {
            assert!(parse_public_key(bad).is_err(), "{bad:?}");
        }
    }
}
