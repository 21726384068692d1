use super::*;

const LIMIT: usize = 1024;

fn request(version: Version, headers: &[(&str, &str)]) -> Request<()> {
    let mut builder = Request::builder().uri("/").version(version);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).unwrap()
}

fn framing_of(headers: &[(&str, &str)]) -> Result<Framing, BodyError> {
    framing(&request(Version::HTTP_11, headers))
}

/// Feeds `input` in one piece, then one byte at a time; both must agree.
fn decode_all(framing: Framing, limit: usize, input: &[u8]) -> (Bytes, BytesMut) {
    let mut buf = BytesMut::from(input);
    let whole = BodyDecoder::new(framing, limit)
        .decode(&mut buf)
        .unwrap()
        .expect("whole body");

    let mut decoder = BodyDecoder::new(framing, limit);
    let mut trickle = BytesMut::new();
    let mut body = None;
    for (i, &byte) in input.iter().enumerate() {
        trickle.extend_from_slice(&[byte]);
        if let Some(done) = decoder.decode(&mut trickle).unwrap() {
            body = Some(done);
            trickle.extend_from_slice(&input[i + 1..]);
            break;
        }
    }
    assert_eq!(body.as_ref(), Some(&whole), "byte-by-byte");
    assert_eq!(trickle, buf, "rest after byte-by-byte");
    (whole, buf)
}

fn decode_err(framing: Framing, limit: usize, input: &[u8]) -> BodyError {
    BodyDecoder::new(framing, limit)
        .decode(&mut BytesMut::from(input))
        .unwrap_err()
}

#[test]
fn content_length_exact() {
    let (body, rest) = decode_all(Framing::ContentLength(5), LIMIT, b"hello");
    assert_eq!(body, &b"hello"[..]);
    assert!(rest.is_empty());
}

#[test]
fn content_length_across_calls_leaves_the_next_request() {
    let mut decoder = BodyDecoder::new(Framing::ContentLength(11), LIMIT);
    let mut buf = BytesMut::new();
    for piece in [&b"hel"[..], b"", b"lo ", b"wor"] {
        buf.extend_from_slice(piece);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        assert!(buf.is_empty());
    }
    buf.extend_from_slice(b"ldGET / HTTP/1.1\r\n\r\n");
    let body = decoder.decode(&mut buf).unwrap().unwrap();
    assert_eq!(body, &b"hello world"[..]);
    assert_eq!(buf, &b"GET / HTTP/1.1\r\n\r\n"[..]);
    // Done: nothing more is taken from the next request.
    assert_eq!(decoder.decode(&mut buf), Ok(Some(Bytes::new())));
    assert_eq!(buf.len(), 18);
}

#[test]
fn no_body_takes_nothing() {
    for framing in [Framing::None, Framing::ContentLength(0)] {
        let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\n\r\n"[..]);
        let body = BodyDecoder::new(framing, 0).decode(&mut buf).unwrap();
        assert_eq!(body, Some(Bytes::new()));
        assert_eq!(buf.len(), 18);
    }
}

const CHUNKED: &[u8] = b"5;name=value;q=\"a;b\"\r\nhello\r\n\
    6 ; x\r\n world\r\n\
    A\r\n0123456789\r\n\
    000\r\n\
    Expires: Wed, 21 Oct 2015 07:28:00 GMT\r\n\
    X-Checksum:\tab c\r\n\
    \r\n";

#[test]
fn chunked_with_extensions_and_trailers_any_split() {
    let (body, rest) = decode_all(Framing::Chunked, LIMIT, CHUNKED);
    assert_eq!(body, &b"hello world0123456789"[..]);
    assert!(rest.is_empty());
}

#[test]
fn chunked_leaves_the_pipelined_request() {
    let mut input = CHUNKED.to_vec();
    input.extend_from_slice(b"GET /next HTTP/1.1\r\n\r\n");
    let (body, rest) = decode_all(Framing::Chunked, LIMIT, &input);
    assert_eq!(body.len(), 21);
    assert_eq!(rest, &b"GET /next HTTP/1.1\r\n\r\n"[..]);

    let (body, rest) = decode_all(Framing::Chunked, LIMIT, b"0\r\n\r\nPOST");
    assert!(body.is_empty());
    assert_eq!(rest, &b"POST"[..]);
}

#[test]
fn content_length_limit() {
    let (body, _) = decode_all(Framing::ContentLength(4), 4, b"abcd");
    assert_eq!(body.len(), 4);
    // Refused before any byte of the body arrives.
    let err = decode_err(Framing::ContentLength(5), 4, b"");
    assert_eq!(err, BodyError::TooLarge { limit: 4 });
    assert_eq!(err.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        decode_err(Framing::ContentLength(u64::MAX), LIMIT, b"").status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
}

#[test]
fn chunked_limit() {
    let (body, _) = decode_all(
        Framing::Chunked,
        10,
        b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n",
    );
    assert_eq!(body, &b"helloworld"[..]);
    // The second size alone is enough to refuse: its data never has to arrive.
    let mut decoder = BodyDecoder::new(Framing::Chunked, 10);
    let mut buf = BytesMut::from(&b"5\r\nhello\r\n6\r"[..]);
    let err = decoder.decode(&mut buf).unwrap_err();
    assert_eq!(err, BodyError::TooLarge { limit: 10 });
    assert_eq!(err.status().as_u16(), 413);
    // Sticky.
    assert_eq!(
        decoder.decode(&mut BytesMut::from(&b"\nworld!"[..])),
        Err(err)
    );
    // A size that overflows the running sum is over any limit.
    let input = b"1\r\na\r\nffffffffffffffff\r\n";
    assert_eq!(
        decode_err(Framing::Chunked, usize::MAX, input),
        BodyError::TooLarge { limit: usize::MAX }
    );
}

#[test]
fn malformed_chunked_is_400() {
    let long_ext = [
        &b"1;"[..],
        &[b'x'; MAX_SIZE_LINE][..],
        b"\r\na\r\n0\r\n\r\n",
    ]
    .concat();
    let long_trailer = [&b"0\r\nx: "[..], &[b'y'; MAX_TRAILERS][..], b"\r\n\r\n"].concat();
    for (input, why) in [
        (&b"zz\r\n"[..], "chunk size line"),
        (b"\r\n", "chunk size line"),
        (b";x\r\n", "chunk size line"),
        (b"-1\r\n", "chunk size line"),
        (b"ffffffffffffffffff\r\n", "chunk size overflows"),
        (b"5\nhello\r\n", "chunk size line"),
        (b"5 \r\nhello\r\n", "chunk size line"),
        (b"5;a\nb\r\nhello\r\n", "chunk size line"),
        (b"5;a\rb\r\nhello\r\n", "chunk size line"),
        (b"5\r\nhelloX\r\n", "missing CRLF after chunk data"),
        (b"5\r\nhello\n0\r\n\r\n", "missing CRLF after chunk data"),
        (b"5\r\nhello\r\r\n", "missing CRLF after chunk data"),
        (b"0\r\nno colon\r\n\r\n", "trailer field"),
        (b"0\r\n folded: x\r\n\r\n", "trailer field"),
        (b"0\r\n: empty name\r\n\r\n", "trailer field"),
        (b"0\r\nx: a\nb\r\n\r\n", "trailer field"),
        (b"0\r\n\rX", "trailer field"),
        (&long_ext, "chunk size line too long"),
        (&long_trailer, "trailer section too large"),
    ] {
        let err = decode_err(Framing::Chunked, LIMIT, input);
        assert_eq!(
            err,
            BodyError::Malformed(why),
            "{:?}",
            String::from_utf8_lossy(input)
        );
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }
}

#[test]
fn longest_size_line_and_trailers_pass() {
    // Exactly at both bounds, CRLFs included.
    let ext = [&b"1;"[..], &[b'x'; MAX_SIZE_LINE - 4][..], b"\r\n"].concat();
    let trailer = [&b"x:"[..], &[b'y'; MAX_TRAILERS - 6][..], b"\r\n"].concat();
    let input = [&ext[..], b"a\r\n0\r\n", &trailer, b"\r\n"].concat();
    let (body, _) = decode_all(Framing::Chunked, LIMIT, &input);
    assert_eq!(body, &b"a"[..]);
}

#[test]
fn framing_from_headers() {
    use BodyError::*;
    const NOT_LAST: BodyError = Malformed("final transfer coding is not chunked");
    const TWICE: BodyError = Malformed("chunked applied more than once");
    const BOTH: BodyError = Malformed("both Content-Length and Transfer-Encoding");
    let (te, cl) = ("transfer-encoding", "content-length");
    for (headers, expected) in [
        (&[][..], Ok(Framing::None)),
        (&[(cl, "0")], Ok(Framing::ContentLength(0))),
        (&[(cl, "42")], Ok(Framing::ContentLength(42))),
        (&[(cl, "007")], Ok(Framing::ContentLength(7))),
        (&[(cl, "5, 5")], Ok(Framing::ContentLength(5))),
        (&[(cl, "5"), (cl, "5")], Ok(Framing::ContentLength(5))),
        (&[(cl, "5, 6")], Err(InvalidContentLength)),
        (&[(cl, "5"), (cl, "6")], Err(InvalidContentLength)),
        (&[(cl, "5,")], Err(InvalidContentLength)),
        (&[(cl, "")], Err(InvalidContentLength)),
        (&[(cl, "-1")], Err(InvalidContentLength)),
        (&[(cl, "+5")], Err(InvalidContentLength)),
        (&[(cl, "0x10")], Err(InvalidContentLength)),
        (&[(cl, "1 2")], Err(InvalidContentLength)),
        (&[(cl, "18446744073709551616")], Err(InvalidContentLength)),
        (&[(te, "chunked")], Ok(Framing::Chunked)),
        (&[(te, "Chunked")], Ok(Framing::Chunked)),
        (&[(te, " , chunked")], Ok(Framing::Chunked)),
        (&[(te, "gzip, chunked")], Err(UnsupportedTransferEncoding)),
        (
            &[(te, "gzip"), (te, "chunked")],
            Err(UnsupportedTransferEncoding),
        ),
        (&[(te, "chunked, gzip")], Err(NOT_LAST)),
        (&[(te, "gzip")], Err(NOT_LAST)),
        (&[(te, "identity")], Err(NOT_LAST)),
        (&[(te, "chunked;x=1")], Err(NOT_LAST)),
        (&[(te, "")], Err(NOT_LAST)),
        (&[(te, "chunked, chunked")], Err(TWICE)),
        (&[(te, "chunked"), (cl, "5")], Err(BOTH)),
    ] {
        let got = framing_of(headers);
        assert_eq!(got, expected, "{headers:?}");
        if let Err(err) = got {
            let unsupported = err == UnsupportedTransferEncoding;
            let status = if unsupported { 501 } else { 400 };
            assert_eq!(err.status().as_u16(), status, "{headers:?}");
        }
    }
}

#[test]
fn http_1_0_with_transfer_encoding_is_400() {
    let err = framing(&request(
        Version::HTTP_10,
        &[("transfer-encoding", "chunked")],
    ));
    assert_eq!(
        err,
        Err(BodyError::Malformed(
            "Transfer-Encoding in an HTTP/1.0 request"
        ))
    );
    let ok = framing(&request(Version::HTTP_10, &[("content-length", "3")]));
    assert_eq!(ok, Ok(Framing::ContentLength(3)));
}
