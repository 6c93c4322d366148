//! Message text as the view shows it: plain runs and web links, and whether it mentions someone. Nothing
//! else in a message is ever interpreted; a link is only ever an `http://` or `https://` address, shown
//! as the text it is.

/// One run of a message's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part<'a> {
    /// Shown as it is.
    Text(&'a str),
    /// An `http(s)://` address, shown as a link to itself.
    Link(&'a str),
}

/// Cuts `text` into [`Part`]s. A link runs from `http://` or `https://` to the next whitespace, less
/// trailing punctuation (so "see https://example.com." links without the period).
pub fn parts(text: &str) -> Vec<Part<'_>> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = link_start(rest) {
        let (before, from) = rest.split_at(start);
        let end = from.find(char::is_whitespace).unwrap_or(from.len());
        let link = from[..end].trim_end_matches(['.', ',', ';', ':', '!', '?', ')', '\'', '"']);
        let scheme_len = if link.starts_with("https://") { 8 } else { 7 };
        if link.len() == scheme_len {
            // A bare scheme is not a link: keep it as text and look further.
            let skip = start + scheme_len;
            out.push(Part::Text(&rest[..skip]));
            rest = &rest[skip..];
            continue;
        }
        if !before.is_empty() {
            out.push(Part::Text(before));
        }
        out.push(Part::Link(link));
        rest = &from[link.len()..];
    }
    if !rest.is_empty() {
        out.push(Part::Text(rest));
    }
    out
}

/// Where the next `http://` or `https://` starts, at the start of the text or after whitespace or `(`.
fn link_start(text: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(found) = text[from..].find("http") {
        let at = from + found;
        let rest = &text[at..];
        let boundary = text[..at]
            .chars()
            .next_back()
            .is_none_or(|c| c.is_whitespace() || c == '(');
        if boundary && (rest.starts_with("http://") || rest.starts_with("https://")) {
            return Some(at);
        }
        from = at + 4;
    }
    None
}

/// Whether `text` mentions the user `name`: `@name`, not right after a name character and not followed by
/// one (so `@ann,` mentions ann; `@anna` and `x@ann` do not). ASCII case does not matter.
pub fn mentions(text: &str, name: &str) -> bool {
    let is_name = |c: &u8| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-';
    let (bytes, name) = (text.as_bytes(), name.as_bytes());
    (0..bytes.len()).any(|at| {
        let end = at + 1 + name.len();
        bytes[at] == b'@'
            && bytes
                .get(at + 1..end)
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
            && !at
                .checked_sub(1)
                .and_then(|i| bytes.get(i))
                .is_some_and(is_name)
            && !bytes.get(end).is_some_and(is_name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use Part::{Link, Text};

    #[test]
    fn links_are_found_between_plain_runs() {
        assert_eq!(parts("no links here"), [Text("no links here")]);
        assert_eq!(
            parts("see https://example.com/a?b=1. Thanks"),
            [
                Text("see "),
                Link("https://example.com/a?b=1"),
                Text(". Thanks")
            ]
        );
        assert_eq!(
            parts("http://a.b (http://c.d)"),
            [
                Link("http://a.b"),
                Text(" ("),
                Link("http://c.d"),
                Text(")")
            ]
        );
    }

    #[test]
    fn only_http_links_at_a_word_start_count() {
        for text in [
            "javascript:alert(1)",
            "xhttp://evil.example",
            "ftp://files.example",
            "https://",
            "<a href=\"https://x.example\">",
        ] {
            assert!(
                parts(text).iter().all(|p| match p {
                    Link(l) => l.starts_with("http") && !l.contains('<') && !l.contains('"'),
                    Text(_) => true,
                }),
                "{text}: {:?}",
                parts(text)
            );
        }
        assert_eq!(parts("https://"), [Text("https://")]);
        assert_eq!(
            parts("xhttp://evil.example"),
            [Text("xhttp://evil.example")]
        );
        assert_eq!(
            parts("<a href=\"https://x.example\">"),
            [Text("<a href=\"https://x.example\">")]
        );
    }

    #[test]
    fn a_mention_is_the_whole_name_after_an_at_sign() {
        for text in [
            "@ann hi",
            "hi @ann",
            "hi @ann, see this",
            "(@ANN)",
            "@bob @ann",
            "@ann",
        ] {
            assert!(mentions(text, "ann"), "{text:?}");
        }
        for text in [
            "ann",
            "@anna",
            "x@ann",
            "@an",
            "mail ann@example.com",
            "@",
            "",
            "@bob",
        ] {
            assert!(!mentions(text, "ann"), "{text:?}");
        }
        assert!(
            mentions("é@ann", "ann"),
            "after a letter that is no name character"
        );
    }
}
