//! `@fastify/websocket`'s `test/inject.test.js`, case by case: `App::inject_ws` (`injectWS`)
//! connects a client to the app with no listening socket, through the real pipeline (routing,
//! hooks, handshake, 101, WebSocket phase).

mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use common::block_on_within;
use ringsocket::{App, Error, Hook, Message, Reply};

/// Every test here must end well within this.
const LIMIT: Duration = Duration::from_secs(5);

/// A ws route that forwards the first message it receives (as text) to `tx`, like the
/// originals' `conn.once('data', chunk => _resolve(chunk.toString()))`.
fn forward_first(tx: async_channel::Sender<String>) -> App {
    App::builder()
        .register("", |scope| {
            scope.ws("/ws", move |mut ws, _req| {
                let tx = tx.clone();
                async move {
                    if let Some(Ok(message)) = ws.recv().await {
                        let _ = tx.send(message.as_text().unwrap_or("").to_owned()).await;
                    }
                }
            })
        })
        .build()
        .unwrap()
}

/// "routes correctly the message"
///
/// A message sent by the injected client reaches the `/ws` handler.
#[test]
fn routes_correctly_the_message() {
    let (tx, rx) = async_channel::unbounded();
    let app = forward_first(tx);
    block_on_within(LIMIT, async move {
        let mut ws = app.inject_ws("/ws").connect().await.unwrap();
        ws.send(Message::text("hi from client")).await.unwrap();
        assert_eq!(rx.recv().await.unwrap(), "hi from client");
    });
}

/// "redirect on / if no path specified"
///
/// `injectWS()` defaults its path to `/`; Rust has no default arguments, so the closest test
/// is that `inject_ws("/")` reaches the `/` route (the root of a registered scope, as in the
/// original) and not another one.
#[test]
fn redirect_on_slash_if_no_path_specified() {
    let (tx, rx) = async_channel::unbounded();
    let other = tx.clone();
    let app = App::builder()
        .register("", |scope| {
            scope
                .ws("/", move |mut ws, _req| {
                    let tx = tx.clone();
                    async move {
                        if let Some(Ok(message)) = ws.recv().await {
                            let _ = tx.send(message.as_text().unwrap_or("").to_owned()).await;
                        }
                    }
                })
                .ws("/other", move |_ws, _req| {
                    let tx = other.clone();
                    async move {
                        let _ = tx.send("wrong-route".to_owned()).await;
                    }
                })
        })
        .build()
        .unwrap();
    block_on_within(LIMIT, async move {
        let mut ws = app.inject_ws("/").connect().await.unwrap();
        ws.send(Message::text("hi from client")).await.unwrap();
        assert_eq!(rx.recv().await.unwrap(), "hi from client");
    });
}

/// "routes correctly the message between two routes"
///
/// `/ws-2` gets the message, `/ws` is never reached.
#[test]
fn routes_correctly_the_message_between_two_routes() {
    let (tx, rx) = async_channel::unbounded();
    let wrong = tx.clone();
    let app = App::builder()
        .register("", |scope| {
            scope
                .ws("/ws", move |mut ws, _req| {
                    let tx = wrong.clone();
                    async move {
                        if ws.recv().await.is_some() {
                            let _ = tx.send("wrong-route".to_owned()).await;
                        }
                    }
                })
                .ws("/ws-2", move |mut ws, _req| {
                    let tx = tx.clone();
                    async move {
                        if let Some(Ok(message)) = ws.recv().await {
                            let _ = tx.send(message.as_text().unwrap_or("").to_owned()).await;
                        }
                    }
                })
        })
        .build()
        .unwrap();
    block_on_within(LIMIT, async move {
        let mut ws = app.inject_ws("/ws-2").connect().await.unwrap();
        ws.send(Message::text("hi from client")).await.unwrap();
        assert_eq!(rx.recv().await.unwrap(), "hi from client");
    });
}

/// The original's auth scope: preValidation answers 401 unless `api-key` is right.
fn api_key_app(tx: async_channel::Sender<String>) -> App {
    App::builder()
        .register("", |scope| {
            scope
                .hook(Hook::pre_validation(|req| async move {
                    if req.header("api-key") != Some("some-random-key") {
                        return Some(Reply::new().code(401));
                    }
                    None
                }))
                .ws("/", move |mut ws, _req| {
                    let tx = tx.clone();
                    async move {
                        if let Some(Ok(message)) = ws.recv().await {
                            let _ = tx.send(message.as_text().unwrap_or("").to_owned()).await;
                        }
                    }
                })
        })
        .build()
        .unwrap()
}

/// "use the upgrade context to upgrade if there is some hook"
///
/// The header given to `inject_ws` (`upgradeContext.headers`) reaches the preValidation auth
/// hook, which lets the upgrade through.
#[test]
fn use_the_upgrade_context_to_upgrade_if_there_is_some_hook() {
    let (tx, rx) = async_channel::unbounded();
    let app = api_key_app(tx);
    block_on_within(LIMIT, async move {
        let mut ws = app
            .inject_ws("/")
            .header("api-key", "some-random-key")
            .connect()
            .await
            .unwrap();
        ws.send(Message::text("hi from client")).await.unwrap();
        assert_eq!(rx.recv().await.unwrap(), "hi from client");
    });
}

/// "rejects if the websocket is not upgraded"
///
/// Without the header the hook answers 401 and `inject_ws` fails with "Unexpected server
/// response: 401".
#[test]
fn rejects_if_the_websocket_is_not_upgraded() {
    let (tx, _rx) = async_channel::unbounded();
    let app = api_key_app(tx);
    block_on_within(LIMIT, async move {
        let err = app.inject_ws("/").connect().await.unwrap_err();
        assert_eq!(err.to_string(), "Unexpected server response: 401");
        assert!(
            matches!(err, Error::UnexpectedResponse { status } if status == 401),
            "{err:?}"
        );
    });
}

/// "inject hooks"
///
/// `on_init` runs first (before the request reaches the server: onRequest sees it done),
/// `on_open` second, with the connected client, before `connect` returns it. In Node all
/// three are the same `ws` object; here `on_init` runs before the client exists, and `on_open`
/// gets the very client `connect` returns (same handshake answer). Messaging then works.
#[test]
fn inject_hooks() {
    let order: Arc<Mutex<Vec<&'static str>>> = Arc::new(Mutex::new(Vec::new()));
    let hook_order = Arc::clone(&order);
    let app = App::builder()
        .hook(Hook::on_request(move |_req| {
            hook_order.lock().unwrap().push("onRequest (server)");
            async {}
        }))
        .ws("/", |mut ws, _req| async move {
            while let Some(Ok(message)) = ws.recv().await {
                if message.is_close() || ws.send(message).await.is_err() {
                    break;
                }
            }
        })
        .build()
        .unwrap();
    let opened_accept: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    block_on_within(LIMIT, {
        let order = Arc::clone(&order);
        let opened_accept = Arc::clone(&opened_accept);
        async move {
            let init_order = Arc::clone(&order);
            let open_order = Arc::clone(&order);
            let open_accept = Arc::clone(&opened_accept);
            let mut ws = app
                .inject_ws("/")
                .on_init(move || init_order.lock().unwrap().push("onInit"))
                .on_open(move |client| {
                    open_order.lock().unwrap().push("onOpen");
                    *open_accept.lock().unwrap() = client
                        .response()
                        .headers()
                        .get("sec-websocket-accept")
                        .map(|v| v.to_str().unwrap().to_owned());
                })
                .connect()
                .await
                .unwrap();
            order.lock().unwrap().push("resolved");

            let accept = ws
                .response()
                .headers()
                .get("sec-websocket-accept")
                .map(|v| v.to_str().unwrap().to_owned());
            assert!(accept.is_some());
            assert_eq!(*opened_accept.lock().unwrap(), accept, "same client");

            ws.send(Message::text("hi from client")).await.unwrap();
            assert_eq!(
                ws.recv().await.unwrap().unwrap(),
                Message::text("hi from client")
            );
        }
    });
    assert_eq!(
        *order.lock().unwrap(),
        ["onInit", "onRequest (server)", "onOpen", "resolved"]
    );
}
