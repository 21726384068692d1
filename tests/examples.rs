//! The examples' apps, driven in memory (`inject`, `inject_ws`) and over a real server
//! (2 workers on 127.0.0.1:0) with the crate's client: each behaves as its documentation says.

// Each included example loads the shared `examples/support` module itself.
#![allow(clippy::duplicate_mod)]

mod common;

#[allow(dead_code)]
#[path = "../examples/hooks_auth.rs"]
mod hooks_auth;

#[allow(dead_code)]
#[path = "../examples/full_declaration.rs"]
mod full_declaration;

#[allow(dead_code)]
#[path = "../examples/wildcard.rs"]
mod wildcard;

use std::time::Duration;

use common::{block_on_within, http_get, start};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use ringsocket::{client::Client, CloseFrame, Error, Message};

/// Every test here must end well within this.
const LIMIT: Duration = Duration::from_secs(5);

/// Sends a text and a binary message; each is answered with `answer`.
async fn each_message_answered<S: AsyncReadRent + AsyncWriteRent>(
    client: &mut Client<S>,
    answer: &'static str,
) {
    client.send(Message::text("hello")).await.unwrap();
    assert_eq!(client.recv().await.unwrap().unwrap(), Message::text(answer));
    client.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(client.recv().await.unwrap().unwrap(), Message::text(answer));
}

/// Closes from the client side and sees the server answer the close.
async fn close_cleanly<S: AsyncReadRent + AsyncWriteRent>(client: &mut Client<S>) {
    client.close(1000, "").await.unwrap();
    assert_eq!(client.recv().await.unwrap().unwrap(), normal_close());
}

fn normal_close() -> Message {
    Message::Close(Some(CloseFrame {
        code: 1000,
        reason: String::new(),
    }))
}

fn assert_unauthorized<S>(result: Result<Client<S>, Error>) {
    match result {
        Err(err @ Error::UnexpectedResponse { .. }) => {
            assert!(
                matches!(err, Error::UnexpectedResponse { status } if status == 401),
                "{err}"
            );
            assert_eq!(err.to_string(), "Unexpected server response: 401");
        }
        Err(other) => panic!("expected 401, got {other}"),
        Ok(_) => panic!("expected 401, got the upgrade"),
    }
}

#[test]
fn hooks_auth_injected() {
    let app = hooks_auth::app();
    block_on_within(LIMIT, async move {
        assert_unauthorized(app.inject_ws("/").connect().await);
        assert_unauthorized(
            app.inject_ws("/")
                .header("api-key", "wrong-key")
                .connect()
                .await,
        );
        let mut client = app
            .inject_ws("/")
            .header("api-key", "some-random-key")
            .connect()
            .await
            .unwrap();
        each_message_answered(&mut client, "hi from server").await;
        close_cleanly(&mut client).await;
    });
}

#[test]
fn hooks_auth_over_tcp() {
    let server = start(hooks_auth::app());
    let addr = server.local_addr();
    block_on_within(LIMIT, async move {
        assert_unauthorized(Client::connect(addr, "/").await);
        assert_unauthorized(
            Client::builder(addr, "/")
                .header("api-key", "wrong-key")
                .connect()
                .await,
        );
        let mut client = Client::builder(addr, "/")
            .header("api-key", "some-random-key")
            .connect()
            .await
            .unwrap();
        each_message_answered(&mut client, "hi from server").await;
        close_cleanly(&mut client).await;
    });
    server.shutdown();
    server.wait();
}

/// The ws side of `/hello`: `hello client` on open, then a normal close once the client says
/// anything.
async fn hello_ws<S: AsyncReadRent + AsyncWriteRent>(client: &mut Client<S>) {
    assert_eq!(
        client.recv().await.unwrap().unwrap(),
        Message::text("hello client")
    );
    client.send(Message::text("bye")).await.unwrap();
    assert_eq!(client.recv().await.unwrap().unwrap(), normal_close());
    client.close(1000, "").await.unwrap();
    assert!(
        client.recv().await.is_none(),
        "the server ends the TCP connection"
    );
}

#[test]
fn full_declaration_injected() {
    let app = full_declaration::app();
    block_on_within(LIMIT, async move {
        let res = app
            .inject(http::Request::get("/hello").body(()).unwrap())
            .await;
        assert_eq!(res.status(), 200);
        assert_eq!(
            res.header("content-type"),
            Some("application/json; charset=utf-8")
        );
        assert_eq!(res.text(), r#"{"hello":"world"}"#);

        let mut client = app.inject_ws("/hello").connect().await.unwrap();
        hello_ws(&mut client).await;
    });
}

#[test]
fn full_declaration_over_tcp() {
    let server = start(full_declaration::app());
    let addr = server.local_addr();
    let res = http_get(addr, "/hello");
    assert_eq!(res.status, 200);
    assert_eq!(
        res.header("content-type").as_deref(),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(res.text(), r#"{"hello":"world"}"#);
    block_on_within(LIMIT, async move {
        let mut client = Client::connect(addr, "/hello").await.unwrap();
        hello_ws(&mut client).await;
    });
    server.shutdown();
    server.wait();
}

/// The ws side of the wildcard example: `/` has its own answer, every other path the
/// wildcard's; an upgrade to the plain-HTTP route `/http` is accepted and closed at once
/// without a status code, as `@fastify/websocket` does for a route with no ws handler.
#[test]
fn wildcard_injected() {
    let app = wildcard::app();
    block_on_within(LIMIT, async move {
        let res = app
            .inject(http::Request::get("/http").body(()).unwrap())
            .await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.text(), "plain http");

        let mut root = app.inject_ws("/").connect().await.unwrap();
        each_message_answered(&mut root, "hi from server").await;
        close_cleanly(&mut root).await;
        for path in ["/anything", "/deeper/path?x=1", "/http/sub"] {
            let mut other = app.inject_ws(path).connect().await.unwrap();
            each_message_answered(&mut other, "hi from wildcard route").await;
            close_cleanly(&mut other).await;
        }
        let mut http_only = app.inject_ws("/http").connect().await.unwrap();
        assert_eq!(
            http_only.recv().await.unwrap().unwrap(),
            Message::Close(None)
        );
    });
}

#[test]
fn wildcard_over_tcp() {
    let server = start(wildcard::app());
    let addr = server.local_addr();
    let res = http_get(addr, "/http");
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), "plain http");
    block_on_within(LIMIT, async move {
        let mut root = Client::connect(addr, "/").await.unwrap();
        each_message_answered(&mut root, "hi from server").await;
        close_cleanly(&mut root).await;
        for path in ["/anything", "/deeper/path?x=1", "/http/sub"] {
            let mut other = Client::connect(addr, path).await.unwrap();
            each_message_answered(&mut other, "hi from wildcard route").await;
            close_cleanly(&mut other).await;
        }
        let mut http_only = Client::connect(addr, "/http").await.unwrap();
        assert_eq!(
            http_only.recv().await.unwrap().unwrap(),
            Message::Close(None)
        );
    });
    server.shutdown();
    server.wait();
}
