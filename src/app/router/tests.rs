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
