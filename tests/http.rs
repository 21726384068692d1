//! Plain HTTP/1.1 on the same listener as the WebSocket routes: keep-alive, pipelining,
//! Content-Length and chunked bodies with the body limit, HEAD, JSON replies, errors.

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use ringsocket::{App, HttpError, Reply};

fn app() -> App {
    App::builder()
        .body_limit(64)
        .get("/hello", |_req| async { "world" })
        .post("/echo", |req| async move { Reply::new().bytes(req.body()) })
        .get("/json", |_req| async {
            ringsocket::Json(serde_json::json!({"hello": "world"}))
        })
        .get("/fail", |_req| async {
            Err::<Reply, _>(HttpError::new(418, "teapot"))
        })
        .get("/users/:id", |req| async move {
            format!("user {}", req.param("id").unwrap())
        })
        .build()
        .unwrap()
}

/// Reads responses until `count` complete ones arrived (Content-Length framed).
fn read_responses(stream: &mut TcpStream, count: usize) -> Vec<(u16, String, Vec<u8>)> {
    let mut data = Vec::new();
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    while out.len() < count {
        let n = stream
            .read(&mut chunk)
            .expect("response before the timeout");
        assert!(n > 0, "connection closed after {} responses", out.len());
        data.extend_from_slice(&chunk[..n]);
        while let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).into_owned();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if data.len() < end + 4 + len {
                break;
            }
            let body = data[end + 4..end + 4 + len].to_vec();
            let status = head[9..12].parse().unwrap();
            data.drain(..end + 4 + len);
            out.push((status, head, body));
        }
    }
    out
}

fn connect(addr: std::net::SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let server = common::start(app());
    let mut stream = connect(server.local_addr());
    for i in 0..5 {
        stream
            .write_all(format!("GET /users/{i} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
            .unwrap();
        let (status, head, body) = read_responses(&mut stream, 1).remove(0);
        assert_eq!(status, 200);
        assert!(head.contains("Connection: keep-alive"), "{head}");
        assert_eq!(body, format!("user {i}").as_bytes());
    }
    server.shutdown();
    server.wait();
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = common::start(app());
    let mut stream = connect(server.local_addr());
    let batch = "GET /hello HTTP/1.1\r\nHost: a\r\n\r\n\
                 POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nabcde\
                 POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n2;ext=1\r\n12\r\n0\r\nX-T: 1\r\n\r\n\
                 GET /users/%C3%A9 HTTP/1.1\r\nHost: a\r\n\r\n";
    stream.write_all(batch.as_bytes()).unwrap();
    let responses = read_responses(&mut stream, 4);
    let got: Vec<(u16, Vec<u8>)> = responses.into_iter().map(|(s, _, b)| (s, b)).collect();
    assert_eq!(
        got,
        vec![
            (200, b"world".to_vec()),
            (200, b"abcde".to_vec()),
            (200, b"xyz12".to_vec()),
            (200, "user é".as_bytes().to_vec()),
        ]
    );
    server.shutdown();
    server.wait();
}

#[test]
fn bodies_over_the_limit_get_413_and_close() {
    let server = common::start(app());
    let addr = server.local_addr();
    let mut stream = connect(addr);
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 65\r\n\r\n")
        .unwrap();
    let (status, _, body) = read_responses(&mut stream, 1).remove(0);
    assert_eq!(status, 413);
    assert!(String::from_utf8_lossy(&body).contains("\"statusCode\":413"));
    let mut stream = connect(addr);
    let chunked = format!(
        "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n41\r\n{}\r\n0\r\n\r\n",
        "x".repeat(65)
    );
    stream.write_all(chunked.as_bytes()).unwrap();
    assert_eq!(read_responses(&mut stream, 1)[0].0, 413);
    // Exactly at the limit is fine.
    let mut stream = connect(addr);
    stream
        .write_all(
            format!(
                "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 64\r\n\r\n{}",
                "y".repeat(64)
            )
            .as_bytes(),
        )
        .unwrap();
    let (status, _, body) = read_responses(&mut stream, 1).remove(0);
    assert_eq!((status, body.len()), (200, 64));
    server.shutdown();
    server.wait();
}

#[test]
fn head_gets_headers_without_body_and_json_and_errors_have_their_shape() {
    let server = common::start(app());
    let mut stream = connect(server.local_addr());
    stream.write_all(b"HEAD /hello HTTP/1.1\r\nHost: a\r\n\r\nGET /json HTTP/1.1\r\nHost: a\r\n\r\nGET /fail HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    // HEAD carries Content-Length: 5 but no body; the reader below would misframe if a body came.
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&data).contains("teapot") {
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0);
        data.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&data);
    let parts: Vec<&str> = text.split("HTTP/1.1 ").filter(|s| !s.is_empty()).collect();
    assert_eq!(parts.len(), 3, "{text}");
    assert!(
        parts[0].starts_with("200 OK\r\n")
            && parts[0].contains("Content-Length: 5\r\n")
            && parts[0].ends_with("\r\n\r\n"),
        "{:?}",
        parts[0]
    );
    assert!(
        parts[1].starts_with("200 OK\r\n")
            && parts[1].contains("application/json")
            && parts[1].ends_with(r#"{"hello":"world"}"#),
        "{:?}",
        parts[1]
    );
    assert!(
        parts[2].starts_with("418 I'm a teapot\r\n")
            && parts[2]
                .ends_with(r#"{"statusCode":418,"error":"I'm a teapot","message":"teapot"}"#),
        "{:?}",
        parts[2]
    );
    server.shutdown();
    server.wait();
}

#[test]
fn connection_close_and_http_1_0_end_the_connection() {
    let server = common::start(app());
    let addr = server.local_addr();
    for request in [
        &b"GET /hello HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"[..],
        b"GET /hello HTTP/1.0\r\n\r\n",
    ] {
        let mut stream = connect(addr);
        stream.write_all(request).unwrap();
        let mut all = Vec::new();
        stream.read_to_end(&mut all).expect("the server closes");
        let text = String::from_utf8_lossy(&all);
        assert!(
            text.starts_with("HTTP/1.1 200 OK\r\n")
                && text.contains("Connection: close")
                && text.ends_with("world"),
            "{text}"
        );
    }
    server.shutdown();
    server.wait();
}

#[test]
fn inject_runs_the_same_pipeline_without_a_socket() {
    ringsocket::testing::run(async {
        let app = app();
        let res = app
            .inject(http::Request::get("/users/7").body(()).unwrap())
            .await;
        assert_eq!(
            (res.status().as_u16(), res.text()),
            (200, "user 7".to_owned())
        );
        let res = app
            .inject(http::Request::post("/echo").body("x".repeat(65)).unwrap())
            .await;
        assert_eq!(res.status().as_u16(), 413);
        let res = app
            .inject(http::Request::get("/json").body(()).unwrap())
            .await;
        assert_eq!(
            res.json::<serde_json::Value>().unwrap(),
            serde_json::json!({"hello": "world"})
        );
        let res = app
            .inject(http::Request::get("/nope").body(()).unwrap())
            .await;
        assert_eq!(res.status().as_u16(), 404);
        assert_eq!(
            res.text(),
            r#"{"statusCode":404,"error":"Not Found","message":"Route GET:/nope not found"}"#
        );
    });
}
