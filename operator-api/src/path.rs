//! Percent-encoding of the parts of a request path.
//!
//! Object names are `[A-Za-z0-9_.-]` already (the server refuses others with
//! 400), but a name typed by a user must never change the path: everything
//! but RFC 3986's unreserved characters is encoded, so `/`, `?`, `#`, `%` and
//! spaces stay inside their segment and the server's error names the value.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Everything but the unreserved characters `A-Z a-z 0-9 - . _ ~`.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// One path segment (or query value), percent-encoded.
///
/// `.` and `..` come out unchanged, and URL parsers resolve them (also as
/// `%2E`) against the path; [`is_dot_segment`] tells a caller to refuse them.
pub fn segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// `.` or `..`: a value that cannot be a path segment (the URL would be
/// normalised to another path). No object name is one.
pub fn is_dot_segment(s: &str) -> bool {
    s == "." || s == ".."
}

#[cfg(test)]
mod tests {
    use super::segment;

    #[test]
    fn names_pass_through() {
        assert_eq!(segment("node-1.rack_2~x"), "node-1.rack_2~x");
    }

    #[test]
    fn separators_and_non_ascii_are_encoded() {
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
        assert_eq!(segment("../admin?x=1#f"), "..%2Fadmin%3Fx%3D1%23f");
        assert_eq!(segment("100%"), "100%25");
        assert_eq!(segment("é"), "%C3%A9");
        assert_eq!(segment(""), "");
    }

    #[test]
    fn dot_segments_are_flagged() {
        assert!(super::is_dot_segment(".."));
        assert!(super::is_dot_segment("."));
        assert!(!super::is_dot_segment("..."));
        assert!(!super::is_dot_segment(".hidden"));
    }
}
