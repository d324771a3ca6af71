//! Allocation-free text helpers for the telemetry hot path.

/// Appends `s` as a JSON string literal (quoted and escaped) to `out`.
pub fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    let mut plain = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[plain..i]);
        if escape.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(escape);
        }
        plain = i + 1;
    }
    out.push_str(&s[plain..]);
    out.push('"');
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `value` in decimal, zero-padded to `width` digits.
pub fn push_padded(out: &mut String, value: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut v = value;
    let mut n = 0;
    while v > 0 || n == 0 {
        digits[19 - n] = b'0' + (v % 10) as u8;
        v /= 10;
        n += 1;
    }
    for _ in n..width {
        out.push('0');
    }
    for &d in &digits[20 - n..] {
        out.push(char::from(d));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_match_serde_json() {
        for s in [
            "",
            "plain",
            "q\"uote",
            "back\\slash",
            "a\nb\tc\r",
            "\u{1}\u{1f}",
            "ünï €",
            "end\"",
        ] {
            let mut out = String::new();
            push_json_str(&mut out, s);
            assert_eq!(
                out,
                serde_json::Value::String(s.into()).to_string(),
                "{s:?}"
            );
        }
    }

    #[test]
    fn padded_numbers() {
        let mut out = String::new();
        push_padded(&mut out, 7, 3);
        push_padded(&mut out, 0, 2);
        push_padded(&mut out, 12345, 2);
        push_padded(&mut out, u64::MAX, 1);
        assert_eq!(out, format!("0070012345{}", u64::MAX));
    }
}
