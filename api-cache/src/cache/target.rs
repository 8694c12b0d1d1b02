//! The request target, normalized once, at the front: the same text is
//! keyed, tagged and forwarded to the origin, so a request cannot be cached
//! under one name and fetched under another.
//!
//! - The path (RFC 3986 section 6.2.2): percent-escapes of unreserved
//!   characters are decoded (`%41` is `A`, `%2e` is `.`), the others get
//!   upper-case hex digits, and dot segments are removed (section 5.2.4). A
//!   path that is not absolute, has a broken escape, or climbs above the
//!   root (`/../x`) is refused.
//! - The query: parameters are decoded, ordered by name (repeated names keep
//!   their relative order) and re-encoded, so `?a=1&b=2`, `?b=2&a=1` and
//!   `?b=2&&a=1` are one target. At most [`MAX_QUERY_PARAMETERS`].
//!
//! A target already in normal form, as most are, is copied once and not
//! rebuilt.

/// Query parameters a target may have.
pub(crate) const MAX_QUERY_PARAMETERS: usize = 64;

/// A request target in normal form: the path, then `?` and the query if any.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Target {
    text: String,
    path_len: usize,
}

/// Why a target cannot be normalized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TargetError {
    #[error("the path must start with /")]
    NotAbsolute,
    #[error("a % in the path is not followed by two hexadecimal digits")]
    BrokenEscape,
    #[error("the path climbs above the root with ..")]
    AboveRoot,
    #[error("the query has {0} parameters; at most {MAX_QUERY_PARAMETERS} are accepted")]
    TooManyParameters(usize),
}

impl Target {
    pub(crate) fn parse(path: &str, query: Option<&str>) -> Result<Self, TargetError> {
        let path = normal_path(if path.is_empty() { "/" } else { path })?;
        let query = query.filter(|q| !q.is_empty());
        let mut text = String::with_capacity(path.len() + query.map_or(0, |q| q.len() + 1));
        text.push_str(&path);
        let path_len = text.len();
        if let Some(query) = query {
            let query = normal_query(query)?;
            if !query.is_empty() {
                text.push('?');
                text.push_str(&query);
            }
        }
        Ok(Self { text, path_len })
    }

    /// The path and query, as keyed and as sent to the origin.
    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    pub(crate) fn path(&self) -> &str {
        &self.text[..self.path_len]
    }

    #[cfg(test)]
    pub(crate) fn query(&self) -> Option<&str> {
        self.text.get(self.path_len + 1..)
    }
}

/// Unreserved characters (RFC 3986 section 2.3): an escape of one is the same
/// character.
fn unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

fn normal_path(path: &str) -> Result<std::borrow::Cow<'_, str>, TargetError> {
    if !path.starts_with('/') {
        return Err(TargetError::NotAbsolute);
    }
    if plain(path.as_bytes()) {
        return Ok(std::borrow::Cow::Borrowed(path));
    }
    let decoded = decode_unreserved(path)?;
    if !has_dot_segment(&decoded) {
        return Ok(decoded);
    }
    remove_dot_segments(&decoded).map(std::borrow::Cow::Owned)
}

/// Whether a path has no escape and no segment that starts with a dot: then
/// it is in normal form already (one pass over the bytes, for the hit path).
fn plain(path: &[u8]) -> bool {
    let mut previous = 0;
    for &byte in path {
        if byte == b'%' || (byte == b'.' && previous == b'/') {
            return false;
        }
        previous = byte;
    }
    true
}

/// Decodes escapes of unreserved characters and upper-cases the others.
fn decode_unreserved(path: &str) -> Result<std::borrow::Cow<'_, str>, TargetError> {
    if !path.contains('%') {
        return Ok(std::borrow::Cow::Borrowed(path));
    }
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            let next = bytes[i..]
                .iter()
                .position(|&b| b == b'%')
                .map_or(bytes.len(), |p| i + p);
            out.push_str(&path[i..next]);
            i = next;
            continue;
        }
        let hex = |b: u8| char::from(b).to_digit(16);
        let (Some(high), Some(low)) = (
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) else {
            return Err(TargetError::BrokenEscape);
        };
        let byte = u8::try_from(high * 16 + low).unwrap_or(0);
        if unreserved(byte) {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(byte >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(byte & 15)]));
        }
        i += 3;
    }
    Ok(std::borrow::Cow::Owned(out))
}

fn has_dot_segment(path: &str) -> bool {
    path.split('/')
        .any(|segment| segment == "." || segment == "..")
}

/// RFC 3986 section 5.2.4 for an absolute path; `..` above the root is an error.
fn remove_dot_segments(path: &str) -> Result<String, TargetError> {
    let mut kept: Vec<&str> = Vec::new();
    let mut segments = path[1..].split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        match segment {
            "." => {}
            ".." => {
                if kept.pop().is_none() {
                    return Err(TargetError::AboveRoot);
                }
            }
            _ => kept.push(segment),
        }
        // `/a/.` and `/a/b/..` name a directory: the slash stays.
        if last && (segment == "." || segment == "..") {
            kept.push("");
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &kept {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

fn normal_query(query: &str) -> Result<std::borrow::Cow<'_, str>, TargetError> {
    let (count, normal) = scan_query(query.as_bytes());
    if count > MAX_QUERY_PARAMETERS {
        return Err(TargetError::TooManyParameters(count));
    }
    if normal {
        return Ok(std::borrow::Cow::Borrowed(query));
    }
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    // A stable sort: `id=a&id=b` may mean something different from `id=b&id=a`.
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(std::borrow::Cow::Owned(
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&pairs)
            .finish(),
    ))
}

/// The number of parameters, and whether re-encoding the sorted pairs would
/// give `query` back: `name=value` pairs of characters form encoding keeps as
/// they are, names in order, no empty pair. One pass, for the hit path.
fn scan_query(query: &[u8]) -> (usize, bool) {
    let kept = |text: &[u8]| {
        text.iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'*' | b'-' | b'.' | b'_'))
    };
    let (mut count, mut normal) = (0, true);
    let mut previous: &[u8] = b"";
    for pair in query.split(|&b| b == b'&') {
        if pair.is_empty() {
            normal = false;
            continue;
        }
        count += 1;
        if !normal {
            continue;
        }
        let Some(equals) = pair.iter().position(|&b| b == b'=') else {
            normal = false;
            continue;
        };
        let (name, value) = (&pair[..equals], &pair[equals + 1..]);
        normal = !name.is_empty() && kept(name) && kept(value) && name >= previous;
        previous = name;
    }
    (count, normal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn normal(path: &str, query: Option<&str>) -> String {
        Target::parse(path, query).unwrap().as_str().to_owned()
    }

    #[test]
    fn dot_segments_go_and_may_not_climb_above_the_root() {
        assert_eq!(normal("/a/b/../c/./d", None), "/a/c/d");
        assert_eq!(normal("/a/./", None), "/a/");
        assert_eq!(normal("/a/.", None), "/a/");
        assert_eq!(normal("/a/b/..", None), "/a/");
        assert_eq!(
            normal("/./././air_quality", Some("limit=3")),
            "/air_quality?limit=3"
        );
        assert_eq!(
            normal("/x/%2e%2E/metrics", None),
            "/metrics",
            "escaped dots are dots"
        );
        assert_eq!(normal("//a", None), "//a", "empty segments are kept");
        assert_eq!(Target::parse("/..", None), Err(TargetError::AboveRoot));
        assert_eq!(
            Target::parse("/a/../../b", None),
            Err(TargetError::AboveRoot)
        );
    }

    #[test]
    fn only_unreserved_escapes_are_decoded() {
        assert_eq!(normal("/%41ir%5fquality", None), "/Air_quality");
        assert_eq!(normal("/a%2fb%c3%a9", None), "/a%2Fb%C3%A9");
        assert_eq!(Target::parse("/a%2", None), Err(TargetError::BrokenEscape));
        assert_eq!(Target::parse("/a%zz", None), Err(TargetError::BrokenEscape));
        assert_eq!(
            Target::parse("air_quality", None),
            Err(TargetError::NotAbsolute)
        );
    }

    #[test]
    fn queries_are_sorted_and_re_encoded_and_bounded() {
        assert_eq!(normal("/p", Some("b=2&a=1")), "/p?a=1&b=2");
        assert_eq!(normal("/p", Some("b=2&&a=1&")), "/p?a=1&b=2");
        assert_eq!(normal("/p", Some("id=a&id=b")), "/p?id=a&id=b");
        assert_eq!(
            normal("/p", Some("id=aq_jaen,aq_salvia")),
            "/p?id=aq_jaen%2Caq_salvia"
        );
        assert_eq!(normal("/p", Some("")), "/p");
        assert_eq!(normal("/p", Some("&")), "/p");
        let many = vec!["x=1"; MAX_QUERY_PARAMETERS + 1].join("&");
        assert_eq!(
            Target::parse("/p", Some(&many)),
            Err(TargetError::TooManyParameters(MAX_QUERY_PARAMETERS + 1))
        );
        let target = Target::parse("/p/q", Some("b=1&a=2")).unwrap();
        assert_eq!((target.path(), target.query()), ("/p/q", Some("a=2&b=1")));
        assert_eq!(Target::parse("/p", None).unwrap().query(), None);
    }

    #[test]
    fn a_query_already_in_normal_form_is_kept_and_any_other_is_normalized() {
        for query in [
            "a=1&b=2",
            "limit=5&order=desc",
            "a=1&a=0",
            "x=&y=z",
            "rows=10",
        ] {
            assert!(scan_query(query.as_bytes()).1, "{query}");
            assert_eq!(normal("/p", Some(query)), format!("/p?{query}"));
        }
        for query in [
            "b=1&a=2", "a", "a=1&&b=2", "a=1&", "id=x,y", "a=b=c", "q=a+b", "q=%41",
        ] {
            assert!(!scan_query(query.as_bytes()).1, "{query}");
        }
    }

    /// Path segments as people and tools write them.
    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9_~-]{1,8}",
            Just(".".to_owned()),
            Just("..".to_owned()),
            Just(String::new()),
            "[a-z]{0,3}%[0-9a-fA-F]{2}[a-z]{0,3}",
        ]
    }

    fn path() -> impl Strategy<Value = String> {
        prop::collection::vec(segment(), 0..8).prop_map(|s| format!("/{}", s.join("/")))
    }

    /// An escape of every unreserved character, and its case changed elsewhere.
    fn escape_unreserved(text: &str) -> String {
        text.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~') {
                    format!("%{b:02x}")
                } else {
                    char::from(b).to_string()
                }
            })
            .collect()
    }

    proptest! {
        #[test]
        fn no_input_panics(path in any::<String>(), query in proptest::option::of(any::<String>())) {
            let _ = Target::parse(&path, query.as_deref());
        }

        #[test]
        fn a_normal_target_is_its_own_normal_form(path in path(), query in "[a-z=&%0-9+,.]{0,40}") {
            if let Ok(target) = Target::parse(&path, Some(&query)) {
                let again = Target::parse(target.path(), target.query()).unwrap();
                prop_assert_eq!(again, target);
            }
        }

        #[test]
        fn equivalent_targets_are_one(
            segments in prop::collection::vec("[a-zA-Z0-9_~-]{1,6}", 1..6),
            detour in "[a-z]{1,4}",
            at in 0usize..6,
            params in prop::collection::btree_map("[a-z]{1,5}", "[a-zA-Z0-9]{0,5}", 0..6),
        ) {
            let plain_path = format!("/{}", segments.join("/"));
            // The same path with a `./` and an `x/../` in it, and its unreserved characters escaped.
            // (Before a segment: at the end they would make the path a directory, `/a/`.)
            let mut winding = segments.clone();
            let at = at % winding.len();
            winding.insert(at, format!("{detour}/.."));
            winding.insert(at, ".".to_owned());
            let winding_path = escape_unreserved(&format!("/{}", winding.join("/")));
            let pairs: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let sorted = pairs.join("&");
            let reversed = pairs.iter().rev().cloned().collect::<Vec<_>>().join("&");
            let one = Target::parse(&plain_path, Some(&sorted)).unwrap();
            let other = Target::parse(&winding_path, Some(&reversed)).unwrap();
            prop_assert_eq!(&one, &other);
            prop_assert_eq!(
                crate::cache::key::UrlKey::of(&one),
                crate::cache::key::UrlKey::of(&other)
            );
        }
    }
}
