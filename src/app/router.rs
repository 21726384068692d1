//! The route table: method + path pattern -> value, matched like Fastify's find-my-way with
//! its default options (exact trailing slash, static > `:param` > `*`, with backtracking).
//!
//! A segment trie shared by all methods: each node has sorted static children, at most one
//! `:param` child and the routes that end there, either exactly or with a `*` that takes the
//! rest of the path. Parameter names live on the route, not on the node, so `/a/:x/b` and
//! `/a/:y/c` share one param node and still each report their own name.
//!
//! A lookup visits each trie node at most once (the trie is a tree and the walk is a
//! depth-first search), so it costs at most the path length times the depth of the trie, and
//! its recursion is no deeper than the longest registered pattern, whatever the request.

use std::borrow::Cow;

use http::Method;

/// A route table: method + path pattern -> `T`.
#[derive(Debug)]
pub(crate) struct Router<T> {
    root: Node,
    /// Every route in insertion order; trie leaves hold indexes into it.
    routes: Vec<Route<T>>,
}

#[derive(Debug)]
struct Route<T> {
    method: Method,
    pattern: Box<str>,
    /// The names of the captures, in pattern order, `*` last if present.
    names: Box<[Box<str>]>,
    value: T,
}

/// A (method, index into `Router::routes`) pair; a node holds a handful, so a scan beats a map.
type Leaves = Vec<(Method, usize)>;

#[derive(Debug, Default)]
struct Node {
    /// Sorted by segment, for a binary search that neither hashes nor allocates.
    statics: Vec<(Box<str>, Node)>,
    param: Option<Box<Node>>,
    /// Routes whose pattern ends with `*` right after this node.
    wildcard: Leaves,
    /// Routes whose pattern ends exactly at this node.
    leaves: Leaves,
}

/// One segment of a parsed pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Segment<'a> {
    Static(&'a str),
    Param(&'a str),
    Wildcard,
}

impl<T> Default for Router<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Router<T> {
    /// An empty table.
    pub(crate) fn new() -> Self {
        Self {
            root: Node::default(),
            routes: Vec::new(),
        }
    }

    /// Adds a route. Patterns: segments separated by '/', each either static text, `:name`
    /// (one whole segment, non-empty), or a final `*` (the rest of the path, possibly empty,
    /// captured as param "*"). The pattern must start with '/'.
    ///
    /// Static text is compared with the request path as it arrives, still percent-encoded, so
    /// write it encoded. A segment that merely contains `:` or `*` (`a:b`, `v1*`) is static.
    /// Parameter names are ASCII letters, digits and `_`: find-my-way would read `/:a-:b` or
    /// `/:file.ext` as a param followed by more text, which this router does not support, so
    /// refusing them beats silently meaning something else.
    ///
    /// # Errors
    ///
    /// [`RouteError::InvalidPattern`] for a malformed pattern; [`RouteError::Conflict`] when a
    /// route with the same method and the same shape exists (param names do not count).
    pub(crate) fn insert(
        &mut self,
        method: Method,
        pattern: &str,
        value: T,
    ) -> Result<(), RouteError> {
        let segments = parse(pattern)?;
        let mut node = &mut self.root;
        let mut names: Vec<Box<str>> = Vec::new();
        let mut ends_in_wildcard = false;
        for segment in segments {
            match segment {
                Segment::Static(text) => node = node.static_child(text),
                Segment::Param(name) => {
                    names.push(name.into());
                    node = node.param.get_or_insert_with(Box::default);
                }
                Segment::Wildcard => {
                    names.push("*".into());
                    ends_in_wildcard = true;
                }
            }
        }
        let slot = if ends_in_wildcard {
            &mut node.wildcard
        } else {
            &mut node.leaves
        };
        if let Some(&(_, existing)) = slot.iter().find(|(m, _)| *m == method) {
            return Err(RouteError::Conflict {
                method: method.to_string(),
                pattern: pattern.to_owned(),
                existing: self.routes[existing].pattern.to_string(),
            });
        }
        slot.push((method.clone(), self.routes.len()));
        self.routes.push(Route {
            method,
            pattern: pattern.into(),
            names: names.into(),
            value,
        });
        Ok(())
    }

    /// Finds the route for `method` and `path` (the path without query string, still
    /// percent-encoded). Params are percent-decoded (invalid UTF-8 after decoding -> no match
    /// for that param branch).
    ///
    /// A path that does not start with `/` (`*`, an absolute URI) matches nothing.
    pub(crate) fn find(&self, method: &Method, path: &str) -> Option<(&T, Params)> {
        let rest = path.strip_prefix('/')?;
        let mut captures = Captures {
            values: Vec::new(),
            record: true,
        };
        let index = self.root.walk(Some(rest), &mut captures, &|leaves: &[_]| {
            leaves.iter().find(|(m, _)| m == method).map(|&(_, i)| i)
        })?;
        let route = &self.routes[index];
        debug_assert_eq!(route.names.len(), captures.values.len());
        // Collecting an empty iterator does not allocate, so static routes stay allocation-free.
        let params = route
            .names
            .iter()
            .zip(captures.values)
            .map(|(name, value)| (String::from(&**name), value.into_owned()))
            .collect();
        Some((&route.value, Params(params)))
    }

    /// Every (method, pattern) registered, in insertion order (for docs / debugging).
    pub(crate) fn routes(&self) -> impl Iterator<Item = (&Method, &str)> {
        self.routes.iter().map(|r| (&r.method, &*r.pattern))
    }
}

impl Node {
    fn static_child(&mut self, text: &str) -> &mut Node {
        let i = match self.statics.binary_search_by(|(k, _)| (**k).cmp(text)) {
            Ok(i) => i,
            Err(i) => {
                self.statics.insert(i, (text.into(), Node::default()));
                i
            }
        };
        &mut self.statics[i].1
    }

    /// Depth-first search in priority order. `rest` is the path after the `/` that opens the
    /// current segment, `None` once the path is used up. `pick` chooses a route among those
    /// ending at a node (by method, or any). Each frame pops what it pushed onto `captures`
    /// before giving up, so on success `captures` holds exactly the winning route's values.
    fn walk<'p>(
        &self,
        rest: Option<&'p str>,
        captures: &mut Captures<'p>,
        pick: &impl Fn(&[(Method, usize)]) -> Option<usize>,
    ) -> Option<usize> {
        let Some(rest) = rest else {
            return pick(&self.leaves);
        };
        let (segment, next) = match rest.split_once('/') {
            Some((segment, next)) => (segment, Some(next)),
            None => (rest, None),
        };
        if let Ok(i) = self.statics.binary_search_by(|(k, _)| (**k).cmp(segment)) {
            if let Some(found) = self.statics[i].1.walk(next, captures, pick) {
                return Some(found);
            }
        }
        if let Some(param) = &self.param {
            if let Some(value) = (!segment.is_empty()).then(|| decode(segment)).flatten() {
                captures.push(value);
                if let Some(found) = param.walk(next, captures, pick) {
                    return Some(found);
                }
                captures.pop();
            }
        }
        // Picking first keeps a miss from decoding the whole remainder for nothing.
        let found = pick(&self.wildcard)?;
        captures.push(decode(rest)?);
        Some(found)
    }
}

/// The values a walk has captured so far, in pattern order.
struct Captures<'p> {
    values: Vec<Cow<'p, str>>,
    /// False when the caller only asks whether a route matches: nothing is allocated for
    /// params then (a value is still decoded, to check it is UTF-8).
    record: bool,
}

impl<'p> Captures<'p> {
    fn push(&mut self, value: Cow<'p, str>) {
        if self.record {
            self.values.push(value);
        }
    }

    fn pop(&mut self) {
        if self.record {
            self.values.pop();
        }
    }
}

/// Splits and checks a pattern, so every mistake surfaces when the app is built.
fn parse(pattern: &str) -> Result<Vec<Segment<'_>>, RouteError> {
    let invalid = |reason| RouteError::InvalidPattern {
        pattern: pattern.to_owned(),
        reason,
    };
    let rest = pattern
        .strip_prefix('/')
        .ok_or_else(|| invalid("a pattern must start with '/'"))?;
    if pattern.contains(['?', '#']) {
        // The router only ever sees the path, so such a route could never match.
        return Err(invalid("a pattern cannot contain '?' or '#'"));
    }
    let mut segments = Vec::new();
    let mut parts = rest.split('/').peekable();
    while let Some(part) = parts.next() {
        let segment = if part == "*" {
            if parts.peek().is_some() {
                return Err(invalid("'*' must be the last segment"));
            }
            Segment::Wildcard
        } else if let Some(name) = part.strip_prefix(':') {
            if name.is_empty() {
                return Err(invalid("a parameter needs a name after ':'"));
            }
            if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(invalid(
                    "a parameter is a whole segment named with ASCII letters, digits and '_'",
                ));
            }
            if segments.contains(&Segment::Param(name)) {
                return Err(invalid("duplicate parameter name"));
            }
            Segment::Param(name)
        } else {
            Segment::Static(part)
        };
        segments.push(segment);
    }
    Ok(segments)
}

/// Percent-decodes a captured value. An invalid escape leaves the value raw (as
/// find-my-way does, rather than rejecting the request); `None` when the decoded bytes are
/// not UTF-8, which fails only the branch that captured it.
fn decode(raw: &str) -> Option<Cow<'_, str>> {
    if !raw.contains('%') {
        return Some(Cow::Borrowed(raw));
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = bytes.get(i + 1).and_then(|&b| hex(b));
            let lo = bytes.get(i + 2).and_then(|&b| hex(b));
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Some(Cow::Borrowed(raw));
            };
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Route parameters, in pattern order: `:name` captures by name, a final `*` as `"*"`.
/// Values are percent-decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// The value captured for `name` (`"*"` for the wildcard).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|&(n, _)| n == name).map(|(_, v)| v)
    }

    /// (name, value) pairs in pattern order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// How many parameters the route captured.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the route captured nothing (a static route).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A route that cannot be added to the table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// Same method and same shape (param names ignored: `/a/:x` and `/a/:y` conflict).
    #[error("route {method} {pattern} conflicts with {existing}")]
    Conflict {
        /// The method of both routes.
        method: String,
        /// The pattern being added.
        pattern: String,
        /// The pattern already registered.
        existing: String,
    },
    /// A pattern this router cannot parse.
    #[error("invalid route pattern {pattern:?}: {reason}")]
    InvalidPattern {
        /// The pattern as given.
        pattern: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn router(routes: &[(Method, &'static str)]) -> Router<&'static str> {
        let mut router = Router::new();
        for (method, pattern) in routes {
            router.insert(method.clone(), pattern, *pattern).unwrap();
        }
        router
    }

    /// The matched pattern and its params as owned pairs, for terse assertions.
    fn hit(
        r: &Router<&'static str>,
        method: &Method,
        path: &str,
    ) -> Option<(&'static str, Vec<(String, String)>)> {
        r.find(method, path).map(|(v, p)| {
            let pairs = p
                .iter()
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .collect();
            (*v, pairs)
        })
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|&(n, v)| (n.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn static_beats_param_beats_wildcard() {
        let r = router(&[
            (Method::GET, "/a/*"),
            (Method::GET, "/a/:id"),
            (Method::GET, "/a/b"),
        ]);
        assert_eq!(hit(&r, &Method::GET, "/a/b"), Some(("/a/b", vec![])));
        assert_eq!(
            hit(&r, &Method::GET, "/a/c"),
            Some(("/a/:id", pairs(&[("id", "c")])))
        );
        assert_eq!(
            hit(&r, &Method::GET, "/a/c/d"),
            Some(("/a/*", pairs(&[("*", "c/d")])))
        );
        // A param is never empty, so the wildcard takes the empty remainder.
        assert_eq!(
            hit(&r, &Method::GET, "/a/"),
            Some(("/a/*", pairs(&[("*", "")])))
        );
        assert_eq!(hit(&r, &Method::GET, "/a"), None);
    }

    #[test]
    fn backtracks_from_static_to_param() {
        let r = router(&[(Method::GET, "/a/:id/x"), (Method::GET, "/a/b/y")]);
        assert_eq!(
            hit(&r, &Method::GET, "/a/b/x"),
            Some(("/a/:id/x", pairs(&[("id", "b")])))
        );
        assert_eq!(hit(&r, &Method::GET, "/a/b/y"), Some(("/a/b/y", vec![])));
        assert_eq!(hit(&r, &Method::GET, "/a/b/z"), None);
    }

    #[test]
    fn backtracks_to_wildcard_and_drops_abandoned_captures() {
        let r = router(&[
            (Method::GET, "/:a/:b/end"),
            (Method::GET, "/*"),
            (Method::GET, "/x/:c/y"),
        ]);
        assert_eq!(
            hit(&r, &Method::GET, "/x/1/end"),
            Some(("/:a/:b/end", pairs(&[("a", "x"), ("b", "1")])))
        );
        assert_eq!(
            hit(&r, &Method::GET, "/x/1/y"),
            Some(("/x/:c/y", pairs(&[("c", "1")])))
        );
        assert_eq!(
            hit(&r, &Method::GET, "/x/1/z"),
            Some(("/*", pairs(&[("*", "x/1/z")])))
        );
    }

    #[test]
    fn param_names_belong_to_each_route() {
        let r = router(&[(Method::GET, "/a/:x/b"), (Method::GET, "/a/:y/c")]);
        assert_eq!(
            hit(&r, &Method::GET, "/a/1/b"),
            Some(("/a/:x/b", pairs(&[("x", "1")])))
        );
        assert_eq!(
            hit(&r, &Method::GET, "/a/2/c"),
            Some(("/a/:y/c", pairs(&[("y", "2")])))
        );
    }

    #[test]
    fn methods_are_distinct() {
        let purge = Method::from_bytes(b"PURGE").unwrap();
        let mut r = Router::new();
        r.insert(Method::GET, "/r", 1).unwrap();
        r.insert(Method::POST, "/r", 2).unwrap();
        r.insert(purge.clone(), "/r", 3).unwrap();
        assert_eq!(r.find(&Method::GET, "/r").map(|(v, _)| *v), Some(1));
        assert_eq!(r.find(&Method::POST, "/r").map(|(v, _)| *v), Some(2));
        assert_eq!(r.find(&purge, "/r").map(|(v, _)| *v), Some(3));
        assert!(r.find(&Method::PUT, "/r").is_none());
        assert!(r.find(&Method::HEAD, "/r").is_none());
    }

    #[test]
    fn backtracking_only_considers_the_requested_method() {
        let r = router(&[(Method::POST, "/a/b"), (Method::GET, "/a/:id")]);
        assert_eq!(
            hit(&r, &Method::GET, "/a/b"),
            Some(("/a/:id", pairs(&[("id", "b")])))
        );
        assert_eq!(hit(&r, &Method::POST, "/a/b"), Some(("/a/b", vec![])));
        assert_eq!(hit(&r, &Method::POST, "/a/c"), None);
    }

    #[test]
    fn conflicts() {
        let mut r = Router::new();
        r.insert(Method::GET, "/a/:x", ()).unwrap();
        assert_eq!(
            r.insert(Method::GET, "/a/:y", ()),
            Err(RouteError::Conflict {
                method: "GET".into(),
                pattern: "/a/:y".into(),
                existing: "/a/:x".into(),
            })
        );
        assert!(r.insert(Method::GET, "/a/:x", ()).is_err());
        r.insert(Method::GET, "/f/*", ()).unwrap();
        assert_eq!(
            r.insert(Method::GET, "/f/*", ()).unwrap_err().to_string(),
            "route GET /f/* conflicts with /f/*"
        );
        // Different method or different shape: no conflict.
        r.insert(Method::POST, "/a/:y", ()).unwrap();
        r.insert(Method::GET, "/a/b", ()).unwrap();
        r.insert(Method::GET, "/a/*", ()).unwrap();
        r.insert(Method::GET, "/a/:x/", ()).unwrap();
        r.insert(Method::GET, "/f", ()).unwrap();
        r.insert(Method::GET, "/f/", ()).unwrap();
        assert!(r.insert(Method::GET, "/f/", ()).is_err());
        // A failed insert leaves nothing behind.
        assert_eq!(r.routes().count(), 8);
    }

    #[test]
    fn invalid_patterns() {
        for (pattern, reason) in [
            ("", "a pattern must start with '/'"),
            ("a/b", "a pattern must start with '/'"),
            ("*", "a pattern must start with '/'"),
            ("/a/*/b", "'*' must be the last segment"),
            ("/*/", "'*' must be the last segment"),
            ("/a/:", "a parameter needs a name after ':'"),
            ("/:a/:a", "duplicate parameter name"),
            ("/:a/x/:a/*", "duplicate parameter name"),
            (
                "/:a-:b",
                "a parameter is a whole segment named with ASCII letters, digits and '_'",
            ),
            (
                "/:file.ext",
                "a parameter is a whole segment named with ASCII letters, digits and '_'",
            ),
            (
                "/::a",
                "a parameter is a whole segment named with ASCII letters, digits and '_'",
            ),
            ("/a?b=1", "a pattern cannot contain '?' or '#'"),
            ("/a#top", "a pattern cannot contain '?' or '#'"),
        ] {
            assert_eq!(
                Router::new().insert(Method::GET, pattern, ()),
                Err(RouteError::InvalidPattern {
                    pattern: pattern.into(),
                    reason
                }),
                "{pattern}"
            );
        }
        let err = Router::new().insert(Method::GET, "x", ()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid route pattern \"x\": a pattern must start with '/'"
        );
    }

    #[test]
    fn text_mixed_with_colon_or_star_is_static() {
        let r = router(&[
            (Method::GET, "/a:b"),
            (Method::GET, "/v1*"),
            (Method::GET, "/x/:id_2"),
        ]);
        assert_eq!(hit(&r, &Method::GET, "/a:b"), Some(("/a:b", vec![])));
        assert_eq!(hit(&r, &Method::GET, "/a:c"), None);
        assert_eq!(hit(&r, &Method::GET, "/v1*"), Some(("/v1*", vec![])));
        assert_eq!(hit(&r, &Method::GET, "/v1x"), None);
        assert_eq!(
            hit(&r, &Method::GET, "/x/9"),
            Some(("/x/:id_2", pairs(&[("id_2", "9")])))
        );
    }

    #[test]
    fn trailing_slash_is_distinct() {
        let r = router(&[
            (Method::GET, "/a"),
            (Method::GET, "/b/"),
            (Method::GET, "/p/:id"),
        ]);
        assert!(hit(&r, &Method::GET, "/a").is_some());
        assert!(hit(&r, &Method::GET, "/a/").is_none());
        assert!(hit(&r, &Method::GET, "/b/").is_some());
        assert!(hit(&r, &Method::GET, "/b").is_none());
        assert!(hit(&r, &Method::GET, "/p/1").is_some());
        assert!(hit(&r, &Method::GET, "/p/1/").is_none());
        assert!(hit(&r, &Method::GET, "/p/").is_none());
    }

    #[test]
    fn root_and_empty_segments() {
        let r = router(&[
            (Method::GET, "/"),
            (Method::GET, "/a//b"),
            (Method::GET, "/c/:id"),
        ]);
        assert_eq!(hit(&r, &Method::GET, "/"), Some(("/", vec![])));
        assert_eq!(hit(&r, &Method::GET, "/a//b"), Some(("/a//b", vec![])));
        assert_eq!(hit(&r, &Method::GET, "/a/b"), None);
        // An empty segment is not a param value.
        assert_eq!(hit(&r, &Method::GET, "/c//"), None);
        assert_eq!(hit(&r, &Method::GET, "//"), None);
        for not_a_path in ["", "*", "a", "http://h/"] {
            assert_eq!(hit(&r, &Method::GET, not_a_path), None, "{not_a_path}");
        }
    }

    #[test]
    fn wildcard_remainders() {
        let r = router(&[(Method::GET, "/files/*")]);
        assert_eq!(
            hit(&r, &Method::GET, "/files/"),
            Some(("/files/*", pairs(&[("*", "")])))
        );
        assert_eq!(
            hit(&r, &Method::GET, "/files/a"),
            Some(("/files/*", pairs(&[("*", "a")])))
        );
        assert_eq!(
            hit(&r, &Method::GET, "/files/a/b//c/"),
            Some(("/files/*", pairs(&[("*", "a/b//c/")])))
        );
        assert_eq!(hit(&r, &Method::GET, "/files"), None);
        assert_eq!(hit(&r, &Method::GET, "/filesx/a"), None);
    }

    #[test]
    fn bare_wildcard_catches_everything_including_root() {
        let r = router(&[(Method::GET, "/*"), (Method::GET, "/known")]);
        assert_eq!(
            hit(&r, &Method::GET, "/"),
            Some(("/*", pairs(&[("*", "")])))
        );
        assert_eq!(
            hit(&r, &Method::GET, "/anything"),
            Some(("/*", pairs(&[("*", "anything")])))
        );
        assert_eq!(
            hit(&r, &Method::GET, "/known/x"),
            Some(("/*", pairs(&[("*", "known/x")])))
        );
        assert_eq!(hit(&r, &Method::GET, "/known"), Some(("/known", vec![])));
        assert_eq!(hit(&r, &Method::POST, "/"), None);
    }

    #[test]
    fn params_are_percent_decoded_statics_are_not() {
        let r = router(&[
            (Method::GET, "/caf%C3%A9"),
            (Method::GET, "/u/:name"),
            (Method::GET, "/w/*"),
        ]);
        assert_eq!(
            hit(&r, &Method::GET, "/caf%C3%A9"),
            Some(("/caf%C3%A9", vec![]))
        );
        assert_eq!(hit(&r, &Method::GET, "/caf%c3%a9"), None);
        assert_eq!(hit(&r, &Method::GET, "/café"), None);
        assert_eq!(
            hit(&r, &Method::GET, "/u/caf%c3%A9"),
            Some(("/u/:name", pairs(&[("name", "café")])))
        );
        // A decoded '/' stays inside the param; only a raw one separates segments.
        assert_eq!(
            hit(&r, &Method::GET, "/u/a%2Fb"),
            Some(("/u/:name", pairs(&[("name", "a/b")])))
        );
        assert_eq!(hit(&r, &Method::GET, "/u/a/b"), None);
        assert_eq!(
            hit(&r, &Method::GET, "/u/a%20b+c"),
            Some(("/u/:name", pairs(&[("name", "a b+c")])))
        );
        // Invalid escapes keep the value raw.
        for raw in ["100%", "%zz", "%4", "a%4g%41"] {
            let path = format!("/u/{raw}");
            assert_eq!(
                hit(&r, &Method::GET, &path),
                Some(("/u/:name", pairs(&[("name", raw)])))
            );
        }
        assert_eq!(
            hit(&r, &Method::GET, "/w/a%20b/c%2F"),
            Some(("/w/*", pairs(&[("*", "a b/c/")])))
        );
        // Not UTF-8 once decoded: that branch fails.
        assert_eq!(hit(&r, &Method::GET, "/u/%FF"), None);
        assert_eq!(hit(&r, &Method::GET, "/w/%C3"), None);
    }

    #[test]
    fn invalid_utf8_fails_only_that_branch() {
        let r = router(&[(Method::GET, "/a/:id/x"), (Method::GET, "/:p/%FF/y")]);
        // `/a/:id` cannot take `%FF`, but the root param branch still matches it raw.
        assert_eq!(
            hit(&r, &Method::GET, "/a/%FF/y"),
            Some(("/:p/%FF/y", pairs(&[("p", "a")])))
        );
        assert_eq!(hit(&r, &Method::GET, "/a/%FF/x"), None);
        assert_eq!(hit(&r, &Method::GET, "/a/%E2%82/x"), None);
        assert_eq!(
            hit(&r, &Method::GET, "/a/%E2%82%AC/x"),
            Some(("/a/:id/x", pairs(&[("id", "€")])))
        );
    }

    #[test]
    fn routes_in_insertion_order_and_params_api() {
        let r = router(&[
            (Method::GET, "/z"),
            (Method::POST, "/a/:x/:y/*"),
            (Method::GET, "/a"),
        ]);
        let listed: Vec<_> = r.routes().map(|(m, p)| (m.clone(), p.to_owned())).collect();
        assert_eq!(
            listed,
            vec![
                (Method::GET, "/z".to_owned()),
                (Method::POST, "/a/:x/:y/*".to_owned()),
                (Method::GET, "/a".to_owned()),
            ]
        );
        let (_, params) = r.find(&Method::POST, "/a/1/2/3/4").unwrap();
        assert_eq!(params.len(), 3);
        assert!(!params.is_empty());
        assert_eq!(params.get("x"), Some("1"));
        assert_eq!(params.get("y"), Some("2"));
        assert_eq!(params.get("*"), Some("3/4"));
        assert_eq!(params.get("z"), None);
        assert_eq!(
            params.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            ["x", "y", "*"]
        );
        let (_, params) = r.find(&Method::GET, "/z").unwrap();
        assert!(params.is_empty());
        assert_eq!(params, Params::default());
    }

    #[test]
    fn many_random_static_paths_are_each_found() {
        const ALPHABET: &[u8] = b"abcxyz019-._~%";
        let mut rng = fastrand::Rng::with_seed(0x5eed);
        let mut paths = HashSet::new();
        while paths.len() < 1000 {
            let mut path = String::new();
            for _ in 0..rng.usize(1..=5) {
                path.push('/');
                for _ in 0..rng.usize(0..=6) {
                    path.push(ALPHABET[rng.usize(..ALPHABET.len())] as char);
                }
            }
            paths.insert(path);
        }
        let mut r = Router::new();
        for (i, path) in paths.iter().enumerate() {
            r.insert(Method::GET, path, i).unwrap();
        }
        // Params and wildcards alongside must not steal static matches.
        r.insert(Method::GET, "/:a/:b", usize::MAX).unwrap();
        r.insert(Method::GET, "/*", usize::MAX).unwrap();
        for (i, path) in paths.iter().enumerate() {
            let (value, params) = r.find(&Method::GET, path).unwrap();
            assert_eq!(*value, i, "{path}");
            assert!(params.is_empty(), "{path}");
            assert!(r.find(&Method::POST, path).is_none());
        }
        assert_eq!(r.routes().count(), 1002);
        for (i, path) in paths.iter().enumerate() {
            assert!(r.insert(Method::GET, path, i).is_err(), "{path}");
        }
    }
}
