//! Names of things, checked the same way everywhere: safe in URLs, shells
//! and interface names. A leaf module: the drivers and the use cases both
//! use it (`app::error::check_name` turns the refusal into a 400).

use metalcast_operator_api::carrier;

/// Checks an object name given in a URL path or body: 1-64 characters of
/// `A-Z a-z 0-9 _ . -`, not starting with `-` or `.`. The error says why.
pub fn check_name(kind: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['-', '.'])
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid {kind} name {name:?}: use 1-64 characters from A-Z a-z 0-9 _ . - (not starting with - or .)"
        ))
    }
}

/// Checks the name of an object that a nested control plane may hold as a
/// carrier at its parent (networks, images): a plain name ([`check_name`]),
/// or a carrier name `<prefix>~<suffix>` ([`metalcast_operator_api::carrier`])
/// of at most 64 characters whose `~`-separated parts are plain names.
pub fn check_object_name(kind: &str, name: &str) -> Result<(), String> {
    if !carrier::is_carrier(name) {
        return check_name(kind, name);
    }
    let ok =
        name.len() <= carrier::MAX_NAME && name.split(carrier::SEPARATOR).all(|part| check_name(kind, part).is_ok());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid {kind} name {name:?}: a name with '~' is a nested control plane's carrier, \
             <project prefix>~<name> (docs/recursion.md), of at most 64 characters"
        ))
    }
}

/// Refuses to let an object named `name` belong to `owner` (a project, or
/// `None` for admin objects) when `name` is a carrier name reserved for the
/// nested control plane of another project ([`carrier::may_own`]).
pub fn check_carrier_owner(kind: &str, name: &str, owner: Option<&str>) -> Result<(), String> {
    if !carrier::is_carrier(name) || owner.is_some_and(|p| carrier::may_own(p, name)) {
        return Ok(());
    }
    let holder = name.rsplit_once(carrier::SEPARATOR).map_or("", |(p, _)| p);
    Err(format!(
        "{kind} name {name:?} is reserved: names with '~' are carriers of nested control planes, and this one \
         belongs to the project whose carrier prefix is {holder:?} (docs/recursion.md)"
    ))
}

/// Checks a MAC address `xx:xx:xx:xx:xx:xx`.
pub fn check_mac(mac: &str) -> Result<(), String> {
    let parts: Vec<&str> = mac.split(':').collect();
    let ok = parts.len() == 6 && parts.iter().all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()));
    if ok { Ok(()) } else { Err(format!("invalid macaddr {mac:?}: expected six hex pairs separated by ':'")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("node", "node-1.a_b").is_ok());
        for bad in ["", "-x", ".x", "a/b", "a b", "ä", "x;rm", &"a".repeat(65)] {
            assert!(check_name("node", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn carrier_names() {
        assert!(check_object_name("network", "A1~v100").is_ok());
        assert!(check_object_name("network", "plain").is_ok());
        let long = carrier::network(&"p".repeat(64), 4094);
        assert!(check_object_name("network", &long).is_ok(), "{long}");
        for bad in ["~v100", "A~", "A~~v1", "A~.x", "A~a/b", &format!("A~{}", "a".repeat(63))] {
            assert!(check_object_name("network", bad).is_err(), "{bad:?}");
        }
        // `~` stays out of every other kind of name.
        assert!(check_name("project", "A~v1").is_err());
        assert!(check_carrier_owner("network", "A~v100", Some("A")).is_ok());
        assert!(check_carrier_owner("network", "plain", Some("B")).is_ok());
        let e = check_carrier_owner("network", "A~v100", Some("B")).unwrap_err();
        assert!(e.contains("reserved") && e.contains("\"A\""), "{e}");
        assert!(check_carrier_owner("network", "A~v100", None).is_err(), "admin objects are never carriers");
    }

    #[test]
    fn macs() {
        assert!(check_mac("52:54:00:aB:cd:ef").is_ok());
        assert!(check_mac("52:54:00:ab:cd").is_err());
        assert!(check_mac("52-54-00-ab-cd-ef").is_err());
    }
}
