//! Every RFC 7692 parameter, with and without values, several offers, declines, and the
//! grammar of the header.

use super::*;

fn shared() -> DeflatePolicy {
    DeflatePolicy {
        server_no_context_takeover: true,
        ..DeflatePolicy::default()
    }
}

/// The response for `header` under `policy`, or `None` when declined.
fn answer(header: &str, policy: &DeflatePolicy) -> Option<String> {
    negotiate(header, policy).unwrap().map(|a| a.response)
}

#[test]
fn plain_offer_with_default_policy_keeps_context_takeover() {
    let a = negotiate("permessage-deflate", &DeflatePolicy::default())
        .unwrap()
        .unwrap();
    assert_eq!(a.response, "permessage-deflate");
    assert!(!a.server_no_context_takeover && !a.client_no_context_takeover);
    assert_eq!(
        (a.server_max_window_bits, a.client_max_window_bits),
        (15, 15)
    );
}

#[test]
fn what_browsers_send() {
    // Chromium, Node ws and Python websockets all offer exactly this.
    let header = "permessage-deflate; client_max_window_bits";
    assert_eq!(
        answer(header, &shared()).as_deref(),
        Some("permessage-deflate; server_no_context_takeover")
    );
    assert_eq!(
        answer(header, &DeflatePolicy::default()).as_deref(),
        Some("permessage-deflate")
    );
}

#[test]
fn server_no_context_takeover_offered_is_granted() {
    let a = negotiate(
        "permessage-deflate; server_no_context_takeover",
        &DeflatePolicy::default(),
    )
    .unwrap()
    .unwrap();
    assert!(a.server_no_context_takeover);
    assert_eq!(a.response, "permessage-deflate; server_no_context_takeover");
}

#[test]
fn client_no_context_takeover_is_a_hint_unless_answered() {
    let a = negotiate(
        "permessage-deflate; client_no_context_takeover",
        &DeflatePolicy::default(),
    )
    .unwrap()
    .unwrap();
    assert!(!a.client_no_context_takeover);
    assert_eq!(a.response, "permessage-deflate");
    let policy = DeflatePolicy {
        client_no_context_takeover: true,
        ..DeflatePolicy::default()
    };
    // Asked of the client whether it offered it or not (RFC 7692 §7.1.1.2).
    for header in [
        "permessage-deflate",
        "permessage-deflate; client_no_context_takeover",
    ] {
        let a = negotiate(header, &policy).unwrap().unwrap();
        assert!(a.client_no_context_takeover);
        assert_eq!(a.response, "permessage-deflate; client_no_context_takeover");
    }
}

#[test]
fn server_max_window_bits_is_honoured_and_answered() {
    for bits in 9..=15u8 {
        let a = negotiate(
            &format!("permessage-deflate; server_max_window_bits={bits}"),
            &shared(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(a.server_max_window_bits, bits);
        assert_eq!(
            a.response,
            format!(
                "permessage-deflate; server_no_context_takeover; server_max_window_bits={bits}"
            )
        );
    }
    // Our own smaller limit wins, and is said even when not asked.
    let policy = DeflatePolicy {
        server_max_window_bits: 10,
        ..DeflatePolicy::default()
    };
    assert_eq!(
        answer("permessage-deflate; server_max_window_bits=12", &policy).as_deref(),
        Some("permessage-deflate; server_max_window_bits=10")
    );
    assert_eq!(
        answer("permessage-deflate", &policy).as_deref(),
        Some("permessage-deflate; server_max_window_bits=10")
    );
}

#[test]
fn window_bits_of_8_are_declined() {
    let policy = shared();
    assert_eq!(
        answer("permessage-deflate; server_max_window_bits=8", &policy),
        None
    );
    assert_eq!(
        answer("permessage-deflate; client_max_window_bits=8", &policy),
        None
    );
}

#[test]
fn client_max_window_bits_with_and_without_value() {
    // Not asked: the hint is noted, nothing answered, we inflate any window.
    let a = negotiate(
        "permessage-deflate; client_max_window_bits=10",
        &DeflatePolicy::default(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        (a.client_max_window_bits, a.response.as_str()),
        (15, "permessage-deflate")
    );
    // Asked: min(ours, the hint), or ours when the offer had no value.
    let policy = DeflatePolicy {
        client_max_window_bits: Some(12),
        ..DeflatePolicy::default()
    };
    let a = negotiate("permessage-deflate; client_max_window_bits", &policy)
        .unwrap()
        .unwrap();
    assert_eq!(a.client_max_window_bits, 12);
    assert_eq!(a.response, "permessage-deflate; client_max_window_bits=12");
    assert_eq!(
        answer("permessage-deflate; client_max_window_bits=10", &policy).as_deref(),
        Some("permessage-deflate; client_max_window_bits=10")
    );
    assert_eq!(
        answer("permessage-deflate; client_max_window_bits=15", &policy).as_deref(),
        Some("permessage-deflate; client_max_window_bits=12")
    );
    // An offer that cannot be told about our limit is declined.
    assert_eq!(answer("permessage-deflate", &policy), None);
}

#[test]
fn first_acceptable_offer_wins() {
    // Autobahn 13.7: three offers, most demanding first.
    let header = "permessage-deflate; client_no_context_takeover; client_max_window_bits; \
                  server_no_context_takeover; server_max_window_bits=9, \
                  permessage-deflate; client_no_context_takeover; client_max_window_bits; \
                  server_no_context_takeover, \
                  permessage-deflate; client_no_context_takeover; client_max_window_bits";
    assert_eq!(
        answer(header, &DeflatePolicy::default()).as_deref(),
        Some("permessage-deflate; server_no_context_takeover; server_max_window_bits=9")
    );
    // The first declined (8 bits), the second taken.
    let header = "permessage-deflate; server_max_window_bits=8, permessage-deflate; \
                  server_max_window_bits=10";
    assert_eq!(
        answer(header, &DeflatePolicy::default()).as_deref(),
        Some("permessage-deflate; server_max_window_bits=10")
    );
    // Other extensions are skipped.
    assert_eq!(
        answer(
            "x-webkit-deflate-frame, foo; bar=\"baz\", permessage-deflate",
            &DeflatePolicy::default()
        )
        .as_deref(),
        Some("permessage-deflate")
    );
}

#[test]
fn invalid_offers_are_declined() {
    let policy = DeflatePolicy::default();
    for offer in [
        "permessage-deflate; foo",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover=true",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=09",
        "permessage-deflate; server_max_window_bits=010",
        "permessage-deflate; client_max_window_bits=1a",
        "permessage-deflate; client_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=10; client_max_window_bits=11",
        "x-webkit-deflate-frame",
        "deflate",
    ] {
        assert_eq!(answer(offer, &policy), None, "{offer}");
    }
}

#[test]
fn quoted_values_and_case() {
    let policy = DeflatePolicy::default();
    assert_eq!(
        answer("Permessage-Deflate; server_max_window_bits=\"10\"", &policy).as_deref(),
        Some("permessage-deflate; server_max_window_bits=10")
    );
    assert_eq!(
        answer(
            "permessage-deflate; server_max_window_bits=\"1\\1\"",
            &policy
        )
        .as_deref(),
        Some("permessage-deflate; server_max_window_bits=11")
    );
}

#[test]
fn grammar() {
    let parsed = parse_extensions(" a ;b= c ;d=\"e\" ,, f\t,").unwrap();
    assert_eq!(
        parsed,
        vec![
            Extension {
                name: "a".into(),
                params: vec![
                    ("b".into(), Some("c".into())),
                    ("d".into(), Some("e".into()))
                ],
            },
            Extension {
                name: "f".into(),
                params: vec![],
            },
        ]
    );
    assert_eq!(parse_extensions("").unwrap(), vec![]);
    for (bad, at) in [
        ("permessage-deflate;", 19),
        ("permessage-deflate; =1", 20),
        ("permessage-deflate x", 19),
        ("permessage-deflate; a=", 22),
        ("permessage-deflate; a=\"\"", 22),
        ("permessage-deflate; a=\"b", 22),
        ("permessage-deflate; a=\"b c\"", 24),
        ("permessage-deflate; a=\"b\\", 25),
        ("permessage-deflate; a=b=c", 23),
        ("@", 0),
        ("permessage-deflate; a=\u{e9}", 22),
    ] {
        assert_eq!(
            parse_extensions(bad),
            Err(MalformedExtensions { at }),
            "{bad}"
        );
        assert_eq!(
            negotiate(bad, &DeflatePolicy::default()),
            Err(MalformedExtensions { at }),
            "{bad}"
        );
    }
}

#[test]
fn random_headers_never_panic() {
    let alphabet = b"permessage-deflate;,= \t\"\\89015_xsc";
    let mut rng = fastrand::Rng::with_seed(7692);
    for _ in 0..20_000 {
        let len = rng.usize(0..60);
        let header: String = (0..len)
            .map(|_| char::from(alphabet[rng.usize(..alphabet.len())]))
            .collect();
        if let Ok(Some(a)) = negotiate(&header, &DeflatePolicy::default()) {
            // Whatever is accepted answers with a header we parse back to one extension.
            let back = parse_extensions(&a.response).unwrap();
            assert_eq!(back.len(), 1, "{header:?}");
            assert!((9..=15).contains(&a.server_max_window_bits), "{header:?}");
        }
    }
}
