//! Where the image registry keeps bundle files and which signers it trusts.

use std::path::{Path, PathBuf};

use metalcast_image::PublicKey;

/// Registry configuration (from `metalcast serve --data-dir/--trusted-key/--max-image-size`).
#[derive(Debug, Clone)]
pub struct Registry {
    /// Directory holding `images/<name>.mcb` and upload temporaries.
    pub dir: PathBuf,
    /// Signers whose bundles are accepted. Empty: every upload is refused.
    pub trusted: Vec<PublicKey>,
    /// Largest bundle accepted in one upload, in bytes.
    pub max_upload: u64,
}

/// Default `--max-image-size`: 64 GiB.
pub const DEFAULT_MAX_UPLOAD: u64 = 64 << 30;

impl Registry {
    /// A registry in `dir` trusting `trusted`.
    pub fn new(dir: impl Into<PathBuf>, trusted: Vec<PublicKey>) -> Self {
        Registry { dir: dir.into(), trusted, max_upload: DEFAULT_MAX_UPLOAD }
    }

    /// The stored bundle of image `name` (a checked name: no path separators).
    pub fn bundle_path(&self, name: &str) -> PathBuf {
        self.images_dir().join(format!("{name}.mcb"))
    }

    /// `<dir>/images`.
    pub fn images_dir(&self) -> PathBuf {
        self.dir.join("images")
    }

    /// Create the directories if they are missing.
    pub fn ensure_dirs(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(self.images_dir())
    }

    /// Whether `path` lies in this registry (for assertions in tests).
    pub fn contains(&self, path: &Path) -> bool {
        path.starts_with(&self.dir)
    }
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new("metalcast-data", Vec::new())
    }
}
