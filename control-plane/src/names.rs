//! Names of things, checked the same way everywhere: safe in URLs, shells
//! and interface names. A leaf module: the drivers and the use cases both
//! use it (`app::error::check_name` turns the refusal into a 400).

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
    fn macs() {
        assert!(check_mac("52:54:00:aB:cd:ef").is_ok());
        assert!(check_mac("52:54:00:ab:cd").is_err());
        assert!(check_mac("52-54-00-ab-cd-ef").is_err());
    }
}
