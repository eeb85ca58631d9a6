//! Names a nested control plane's objects carry at its parent ("carriers",
//! `docs/recursion.md`): the network that carries a nested network and the
//! image a nested deployment uploads. Both sides of the recursion compute
//! them here, so the parent can enforce what the child relies on.
//!
//! A carrier name is `<prefix>~<suffix>`, where `<prefix>` is
//! [`prefix`] of the project the nested instance holds at the parent. `~`
//! is not allowed in any other name, and the parent creates a name with a
//! `~` only for the project whose prefix it starts with ([`may_own`]), so a
//! sibling tenant cannot squat a name a nested instance will need.
//!
//! A project name of up to [`SHORT_PREFIX`] characters is its own prefix;
//! a longer one is cut to 31 characters, then `~` and 12 hex digits of its
//! BLAKE3 hash, so every carrier name fits the 64-character limit
//! ([`MAX_NAME`]) whatever the project's name.

/// The separator that marks a carrier name; not allowed in other names.
pub const SEPARATOR: char = '~';

/// The longest object name the control plane accepts.
pub const MAX_NAME: usize = 64;

/// The longest project name that is its own carrier prefix; with `~` and a
/// suffix of up to 19 characters (a 16-digit image hash prefix, `v4094`)
/// a carrier name stays within [`MAX_NAME`].
pub const SHORT_PREFIX: usize = 44;

/// Characters of a long project name kept in its prefix.
const KEPT: usize = 31;

/// The carrier prefix of `project`: the name itself when it is at most
/// [`SHORT_PREFIX`] characters, else its first 31 characters, `~` and 12
/// hex digits of its BLAKE3 hash (44 characters).
pub fn prefix(project: &str) -> String {
    if project.len() <= SHORT_PREFIX {
        return project.to_string();
    }
    let hash = blake3::hash(project.as_bytes()).to_hex();
    // Project names are ASCII (the server refuses anything else), so a byte
    // index is a character index; fall back to the whole name otherwise.
    let kept = project.get(..KEPT).unwrap_or(project);
    format!("{kept}{SEPARATOR}{}", &hash.as_str()[..12])
}

/// The carrier name `<prefix(project)>~<suffix>`.
pub fn name(project: &str, suffix: &str) -> String {
    format!("{}{SEPARATOR}{suffix}", prefix(project))
}

/// Name of the network at the parent that carries the nested network with
/// VLAN label `vlan` of `project`'s nested instance.
pub fn network(project: &str, vlan: u16) -> String {
    name(project, &format!("v{vlan}"))
}

/// Name of the image at the parent that carries a nested deployment's
/// image with root hash `root_hash` (its first 16 characters).
pub fn image(project: &str, root_hash: &str) -> String {
    name(project, root_hash.get(..16).unwrap_or(root_hash))
}

/// Whether `name` is a carrier name (contains [`SEPARATOR`]).
pub fn is_carrier(name: &str) -> bool {
    name.contains(SEPARATOR)
}

/// Whether an object named `name` may belong to `project`: true for every
/// name without [`SEPARATOR`]; a carrier name only when it is
/// `<prefix(project)>~<suffix>` with a non-empty suffix free of `~`.
pub fn may_own(project: &str, name: &str) -> bool {
    match name.rsplit_once(SEPARATOR) {
        None => true,
        Some((p, suffix)) => !suffix.is_empty() && p == prefix(project),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_project_names_are_their_own_prefix() {
        assert_eq!(network("A1", 100), "A1~v100");
        assert_eq!(image("A", "0123456789abcdef0123"), "A~0123456789abcdef");
        assert!(may_own("A1", "A1~v100"));
        assert!(!may_own("A", "A1~v100"));
        assert!(!may_own("B", "A~v100"));
        assert!(!may_own("A", "A~"));
        assert!(may_own("B", "plain-name"));
    }

    #[test]
    fn long_project_names_still_give_names_that_fit_and_stay_apart() {
        let long = "p".repeat(64);
        let other = format!("{}q", "p".repeat(63));
        let n = network(&long, 4094);
        assert!(n.len() <= MAX_NAME, "{n} is {} characters", n.len());
        assert!(image(&long, &"f".repeat(64)).len() <= MAX_NAME);
        assert!(may_own(&long, &n));
        assert!(!may_own(&other, &n), "two long names with the same start share no prefix");
        // A short project cannot be named like a long one's prefix: the prefix holds a '~'.
        assert!(prefix(&long).contains(SEPARATOR));
        assert_eq!(prefix(&"x".repeat(SHORT_PREFIX)), "x".repeat(SHORT_PREFIX));
        assert_eq!(network(&"x".repeat(SHORT_PREFIX), 4094).len(), SHORT_PREFIX + 6);
    }
}
