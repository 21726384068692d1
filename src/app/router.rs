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
        let mut captures = Captures { values: Vec::new() };
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
}

impl<'p> Captures<'p> {
    fn push(&mut self, value: Cow<'p, str>) {
        self.values.push(value);
    }

    fn pop(&mut self) {
        self.values.pop();
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
mod tests;
