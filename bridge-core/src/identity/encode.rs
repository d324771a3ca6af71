//! Percent-encoding as the Azure SDKs do it: every byte outside RFC 3986's unreserved
//! set is encoded, so space is `%20` (never `+`) and `/`, `$`, `&`, `=` are escaped.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// Everything but `A-Z a-z 0-9 - . _ ~`.
const UNRESERVED_KEPT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes every byte that is not unreserved.
pub fn percent_encode_all(text: &str) -> String {
    utf8_percent_encode(text, UNRESERVED_KEPT).to_string()
}

/// Decodes `%XX` escapes; `+` is left alone, as edgeHub's decoder does. Invalid UTF-8
/// is replaced rather than rejected, since this only feeds comparisons and logs.
pub fn percent_decode(text: &str) -> String {
    percent_decode_str(text).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_the_python_sdk() {
        assert_eq!(percent_encode_all("a&b=c"), "a%26b%3Dc");
        assert_eq!(percent_encode_all("x/y?z+1"), "x%2Fy%3Fz%2B1");
        assert_eq!(percent_encode_all("deg C/F"), "deg%20C%2FF");
        assert_eq!(percent_encode_all("$.on"), "%24.on");
        assert_eq!(percent_encode_all("°C"), "%C2%B0C");
        assert_eq!(percent_decode("%C2%B0C+x"), "°C+x");
    }
}
