//! Small text helpers every crate that bounds text needs.

/// The longest prefix of `text` of at most `max_bytes` bytes that ends on a
/// character boundary, so a cut never splits a UTF-8 character.
pub fn prefix_within(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::prefix_within;

    #[test]
    fn cuts_on_a_character_boundary() {
        assert_eq!(prefix_within("héllo", 10), "héllo");
        assert_eq!(prefix_within("héllo", 2), "h");
        assert_eq!(prefix_within("héllo", 3), "hé");
        assert_eq!(prefix_within("€", 0), "");
    }
}
