//! The 21 cases of `@fastify/websocket`'s `test/router.test.js` (v11.3.0, commit 24f9600), one
//! test each, named after the original title (quoted in its doc comment) and asserting the
//! same outcome: which handler runs, payloads, status codes, close codes.
//!
//! Where the original listens on a port, so does the test (port 0, two workers); where it uses
//! `inject`, the test uses `App::inject`. Cases about JavaScript-only things (`this` in a
//! handler, a `wsHandler` that is not a function) test the closest ringsocket behaviour and
//! say why in their doc comment.

mod common;

use std::{
    io::{Read, Write},
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        mpsc, Arc,
    },
    time::Duration,
};

use common::{block_on, start};
use ringsocket::{
    client::Client, testing, App, BuildError, CloseFrame, Hook, Json, Message, Route, ServerHandle,
    WebSocket,
};
use serde::Serialize;

/// How long a test waits for something the server reports from its own thread.
const WAIT: Duration = Duration::from_secs(5);

fn stop(server: ServerHandle) {
    server.shutdown();
    server.wait();
}

fn close(code: u16) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: String::new(),
    }))
}

/// Fastify's `reply.send({ hello: 'world' })`.
#[derive(Serialize)]
struct Hello {
    hello: &'static str,
}

fn hello_world() -> Json<Hello> {
    Json(Hello { hello: "world" })
}

/// Takes messages until the connection ends, keeping it open meanwhile (a Node socket stays
/// open after its handler returns; a ringsocket one closes when the handler is done).
async fn hold_open(ws: &mut WebSocket) {
    while let Some(Ok(message)) = ws.recv().await {
        if message.is_close() {
            break;
        }
    }
}

/// Echoes until the peer closes.
async fn echo(mut ws: WebSocket) {
    while let Some(Ok(message)) = ws.recv().await {
        if message.is_close() || ws.send(message).await.is_err() {
            break;
        }
    }
}

/// Sends 'hello client', reports the first message it gets, then stays open: the handler of
/// the prefixed-route cases.
async fn hello_client(mut ws: WebSocket, tx: mpsc::Sender<Message>) {
    let _ = ws.send(Message::text("hello client")).await;
    if let Some(Ok(message)) = ws.recv().await {
        let _ = tx.send(message);
    }
    hold_open(&mut ws).await;
}

/// The client side of the prefixed-route cases: 'hello server' out, 'hello client' in.
async fn say_hello(addr: SocketAddr, path: &str) {
    let mut client = Client::connect(addr, path).await.unwrap();
    client.send(Message::text("hello server")).await.unwrap();
    assert_eq!(
        client.recv().await.unwrap().unwrap(),
        Message::text("hello client")
    );
    client.close(1000, "").await.unwrap();
    assert_eq!(client.recv().await.unwrap().unwrap(), close(1000));
}

/// A plain `GET path` with `Connection: close`: status and body.
fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let raw = common::http_exchange(addr, request.as_bytes());
    let text = String::from_utf8_lossy(&raw).into_owned();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_else(|| panic!("no complete head in {text:?}"));
    (common::status_of(&raw), body)
}

/// Writes `request` on a fresh connection and reads until `needle` has arrived (the answer may
/// come in several chunks), without waiting for the server to close.
fn read_until(addr: SocketAddr, request: &[u8], needle: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(request).unwrap();
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&received).contains(needle) {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => panic!(
                "connection ended before {needle:?}: {:?}",
                String::from_utf8_lossy(&received)
            ),
            Ok(n) => received.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&received).into_owned()
}

/// "Should expose a websocket on prefixed route"
///
/// `/echo` registered in a scope with prefix `/baz` answers at `/baz/echo`. The original
/// checks `this.prefix === '/baz'` in the handler; there is no `this` here, and the handler
/// sees the prefix in its request path instead.
#[test]
fn should_expose_a_websocket_on_prefixed_route() {
    let (tx, rx) = mpsc::channel();
    let app = App::builder()
        .register("/baz", |scope| {
            scope.ws("/echo", move |mut ws, req| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(Message::text(req.path().to_owned()));
                    let _ = ws.send(Message::text("hello client")).await;
                    if let Some(Ok(message)) = ws.recv().await {
                        let _ = tx.send(message);
                    }
                    hold_open(&mut ws).await;
                }
            })
        })
        .build()
        .unwrap();
    let server = start(app);
    let addr = server.local_addr();
    block_on(say_hello(addr, "/baz/echo"));
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), Message::text("/baz/echo"));
    assert_eq!(
        rx.recv_timeout(WAIT).unwrap(),
        Message::text("hello server")
    );
    stop(server);
}

/// "Should expose a websocket on prefixed route with /"
///
/// `/` registered in a scope with prefix `/baz` answers at `/baz`.
#[test]
fn should_expose_a_websocket_on_prefixed_route_with_slash() {
    let (tx, rx) = mpsc::channel();
    let app = App::builder()
        .register("/baz", |scope| {
            scope.ws("/", move |ws, _req| hello_client(ws, tx.clone()))
        })
        .build()
        .unwrap();
    let server = start(app);
    let addr = server.local_addr();
    block_on(say_hello(addr, "/baz"));
    assert_eq!(
        rx.recv_timeout(WAIT).unwrap(),
        Message::text("hello server")
    );
    stop(server);
}

/// "Should expose websocket and http route"
///
/// A full declaration (`handler` + `wsHandler`) at `/baz/echo`: the WebSocket client gets
/// 'hello client' from the WebSocket handler, a plain GET gets `{"hello":"world"}` from the
/// HTTP handler.
#[test]
fn should_expose_websocket_and_http_route() {
    let (tx, rx) = mpsc::channel();
    let app = App::builder()
        .register("/baz", |scope| {
            scope.route(
                Route::get("/echo")
                    .handler(|_req| async { hello_world() })
                    .ws_handler(move |ws, _req| hello_client(ws, tx.clone())),
            )
        })
        .build()
        .unwrap();
    let server = start(app);
    let addr = server.local_addr();
    block_on(say_hello(addr, "/baz/echo"));
    assert_eq!(
        rx.recv_timeout(WAIT).unwrap(),
        Message::text("hello server")
    );
    assert_eq!(
        http_get(addr, "/baz/echo"),
        (200, r#"{"hello":"world"}"#.to_owned())
    );
    stop(server);
}

/// "Should close on unregistered path (with no wildcard route websocket handler defined)"
///
/// An HTTP-only `/*` route and a WebSocket `/echo`: an upgrade to `/` lands on `/*`, which
/// has no WebSocket handler, so it is accepted and closed at once without a code (1005).
#[test]
fn should_close_on_unregistered_path_with_no_wildcard_route_websocket_handler_defined() {
    let app = App::builder()
        .register("", |scope| {
            scope
                .get("/*", |_req| async { "hello world" })
                .ws("/echo", |ws, _req| echo(ws))
        })
        .build()
        .unwrap();
    let server = start(app);
    let addr = server.local_addr();
    block_on(async move {
        let mut client = Client::connect(addr, "/").await.unwrap();
        assert_eq!(client.recv().await.unwrap().unwrap(), Message::Close(None));
        client.close_without_code().await.unwrap();
        assert!(client.recv().await.is_none(), "closed");
    });
    stop(server);
}

/// "Should use wildcard websocket route when (with a normal http wildcard route defined as well)"
///
/// A `/*` full declaration with both handlers: the WebSocket client at `/` is served by the
/// WebSocket handler ('hello client'), which closes after the client's first message.
#[test]
fn should_use_wildcard_websocket_route_when_with_a_normal_http_wildcard_route_defined_as_well() {
    let app = App::builder()
        .register("", |scope| {
            scope.route(
                Route::get("/*")
                    .handler(|_req| async { hello_world() })
                    .ws_handler(|mut ws, _req| async move {
                        let _ = ws.send(Message::text("hello client")).await;
                        let _ = ws.recv().await;
                        // `socket.close()`: returning closes the connection (1000).
                    }),
            )
        })
        .build()
        .unwrap();
    let server = start(app);
    let addr = server.local_addr();
    block_on(async move {
        let mut client = Client::connect(addr, "/").await.unwrap();
        assert_eq!(
            client.recv().await.unwrap().unwrap(),
            Message::text("hello client")
        );
        client.send(Message::text("bye")).await.unwrap();
        assert_eq!(client.recv().await.unwrap().unwrap(), close(1000));
    });
    assert_eq!(
        http_get(addr, "/x"),
        (200, r#"{"hello":"world"}"#.to_owned())
    );
    stop(server);
}

/// "Should call wildcard route handler on unregistered path"
///
/// A WebSocket `/*` (in a scope) and a WebSocket `/echo`: a client at `/` is served by the
/// wildcard ('hi from wildcard route handler'), then closes.
#[test]
fn should_call_wildcard_route_handler_on_unregistered_path() {
    let reply = |text: &'static str| {
        move |mut ws: WebSocket, _req| async move {
            while let Some(Ok(message)) = ws.recv().await {
                if message.is_close() || ws.send(Message::text(text)).await.is_err() {
                    break;
                }
            }
        }
    };
    let app = App::builder()
        .register("", |scope| {
            scope.ws("/*", reply("hi from wildcard route handler"))
        })
        .ws("/echo", reply("hi from /echo handler"))
        .build()
        .unwrap();
    let server = start(app);
    let addr = server.local_addr();
    block_on(async move {
        let mut client = Client::connect(addr, "/").await.unwrap();
        client.send(Message::text("hi from client")).await.unwrap();
        assert_eq!(
            client.recv().await.unwrap().unwrap(),
            Message::text("hi from wildcard route handler")
        );
        client.close(1000, "").await.unwrap();
        assert_eq!(client.recv().await.unwrap().unwrap(), close(1000));
        assert!(client.recv().await.is_none(), "closed");
    });
    stop(server);
}

/// "Should invoke the correct handler depending on the headers"
///
/// One full declaration at `/`, raw TCP: a plain GET gets 'hi from handler', a GET with the
/// upgrade headers gets 'hi from wsHandler' (the 101 and the frame may come in separate
/// chunks). The original's upgrade request has no `Host`; ringsocket answers such a request
/// 400 as RFC 9112 3.2 requires (tests/handshake.rs `missing_host_is_400`), so this one
/// carries a `Host`, and is otherwise byte for byte the original.
#[test]
fn should_invoke_the_correct_handler_depending_on_the_headers() {
    let app = App::builder()
        .register("", |scope| {
            scope.route(
                Route::get("/")
                    .handler(|_req| async { "hi from handler" })
                    .ws_handler(|mut ws, _req| async move {
                        let _ = ws.send(Message::text("hi from wsHandler")).await;
                        hold_open(&mut ws).await;
                    }),
            )
        })
        .build()
        .unwrap();
    let server = start(app);
    let addr = server.local_addr();

    let http = read_until(
        addr,
        b"GET / HTTP/1.1\r\nHOST: localhost\r\n\r\n",
        "hi from handler",
    );
    assert!(http.starts_with("HTTP/1.1 200"), "{http}");

    let upgrade = read_until(
        addr,
        b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        "hi from wsHandler",
    );
    assert!(upgrade.starts_with("HTTP/1.1 101"), "{upgrade}");
    stop(server);
}

/// "Should call the wildcard handler if a no other non-websocket route with path exists"
///
/// A WebSocket `/*` and an HTTP `/http`: a client at `/http2` is handled by the WebSocket
/// wildcard (which closes), never by the HTTP route.
#[test]
fn should_call_the_wildcard_handler_if_a_no_other_non_websocket_route_with_path_exists() {
    let wildcard = Arc::new(AtomicUsize::new(0));
    let http = Arc::new(AtomicUsize::new(0));
    let (w, h) = (Arc::clone(&wildcard), Arc::clone(&http));
    let app = App::builder()
        .register("", |scope| {
            scope
                .ws("/*", move |_ws, _req| {
                    w.fetch_add(1, Ordering::SeqCst);
                    async {}
                })
                .get("/http", move |_req| {
                    h.fetch_add(1, Ordering::SeqCst);
                    async { "http route" }
                })
        })
        .build()
        .unwrap();
    let server = start(app);
    let addr = server.local_addr();
    block_on(async move {
        let mut client = Client::connect(addr, "/http2").await.unwrap();
        assert_eq!(client.recv().await.unwrap().unwrap(), close(1000));
    });
    stop(server);
    assert_eq!(wildcard.load(Ordering::SeqCst), 1, "wildcard handler");
    assert_eq!(http.load(Ordering::SeqCst), 0, "http handler");
}

/// "Should close the connection if a non-websocket route with path exists"
///
/// A WebSocket `/*` and an HTTP `/http`: an upgrade to `/http` lands on the HTTP route, is
/// accepted and closed without a code (the client sees 1005); neither handler runs.
#[test]
fn should_close_the_connection_if_a_non_websocket_route_with_path_exists() {
    let called = Arc::new(AtomicUsize::new(0));
    let (w, h) = (Arc::clone(&called), Arc::clone(&called));
    let app = App::builder()
        .register("", |scope| {
            scope
                .ws("/*", move |_ws, _req| {
                    w.fetch_add(1, Ordering::SeqCst);
                    async {}
                })
                .get("/http", move |_req| {
                    h.fetch_add(1, Ordering::SeqCst);
                    async { "http route" }
                })
        })
        .build()
        .unwrap();
    let server = start(app);
    let addr = server.local_addr();
    block_on(async move {
        let mut client = Client::connect(addr, "/http").await.unwrap();
        // An empty close frame: no status code, reported as 1005.
        assert_eq!(client.recv().await.unwrap().unwrap(), Message::Close(None));
    });
    stop(server);
    assert_eq!(called.load(Ordering::SeqCst), 0, "no handler runs");
}

/// "Should throw on wrong HTTP method"
///
/// A WebSocket handler on a POST route fails registration with "websocket handler can only
/// be declared in GET method".
#[test]
fn should_throw_on_wrong_http_method() {
    let err = App::builder()
        .register("", |scope| {
            scope
                .route(Route::post("/echo").ws_handler(|ws, _req| echo(ws)))
                .get("/http", |_req| async { "http route" })
        })
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::WsNotGet { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("websocket handler can only be declared in GET method"),
        "{err}"
    );
}

/// "Should throw on invalid wsHandler"
///
/// A `wsHandler` that is not a function cannot be written: `Route::ws_handler` takes an `Fn`.
/// The closest mistake that compiles is a route declared without a usable handler: it fails
/// registration with a message naming the route.
#[test]
fn should_throw_on_invalid_ws_handler() {
    let err = App::builder()
        .register("/baz", |scope| scope.route(Route::get("/echo")))
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::MissingHandler { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("route GET /echo has no handler"),
        "{err}"
    );
}

/// "Should open on registered path"
#[test]
fn should_open_on_registered_path() {
    let app = App::builder()
        .register("", |scope| scope.ws("/echo", |ws, _req| echo(ws)))
        .build()
        .unwrap();
    let server = start(app);
    let addr = server.local_addr();
    block_on(async move {
        let mut client = Client::connect(addr, "/echo").await.unwrap();
        assert_eq!(client.response().status(), 101);
        client.close(1000, "").await.unwrap();
    });
    stop(server);
}

/// "Should send message and close"
///
/// The server gets 'hi from client' and answers 'hi from server'; the client then closes and
/// both ends see the close.
#[test]
fn should_send_message_and_close() {
    let (tx, rx) = mpsc::channel();
    let app = App::builder()
        .register("", |scope| {
            scope.ws("/", move |mut ws, _req| {
                let tx = tx.clone();
                async move {
                    while let Some(Ok(message)) = ws.recv().await {
                        let closing = message.is_close();
                        let _ = tx.send(message);
                        if closing || ws.send(Message::text("hi from server")).await.is_err() {
                            break;
                        }
                    }
                }
            })
        })
        .build()
        .unwrap();
    let server = start(app);
    let addr = server.local_addr();
    block_on(async move {
        let mut client = Client::connect(addr, "/").await.unwrap();
        client.send(Message::text("hi from client")).await.unwrap();
        assert_eq!(
            client.recv().await.unwrap().unwrap(),
            Message::text("hi from server")
        );
        client.close(1000, "").await.unwrap();
        assert_eq!(client.recv().await.unwrap().unwrap(), close(1000));
        assert!(client.recv().await.is_none(), "client closed");
    });
    assert_eq!(
        rx.recv_timeout(WAIT).unwrap(),
        Message::text("hi from client")
    );
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), close(1000), "server closed");
    stop(server);
}

/// "Should return 404 on http request"
///
/// A plain GET to a WebSocket-only route: 404 with an empty body.
#[test]
fn should_return_404_on_http_request() {
    let app = App::builder()
        .register("", |scope| {
            scope.ws("/", |mut ws, _req| async move {
                let _ = ws.recv().await;
                let _ = ws.send(Message::text("hi from server")).await;
            })
        })
        .build()
        .unwrap();
    testing::run(async move {
        let res = app.inject(http::Request::get("/").body(()).unwrap()).await;
        assert_eq!(res.status(), 404);
        assert_eq!(res.text(), "");
    });
}

/// "Should pass route params to per-route handlers"
///
/// `/ws/:id` sees `id == "foo"`; `/ws` sees no params.
#[test]
fn should_pass_route_params_to_per_route_handlers() {
    let app = App::builder()
        .register("", |scope| {
            scope
                .ws("/ws", |ws, req| async move {
                    let text = if req.params().is_empty() {
                        "empty".to_owned()
                    } else {
                        format!("unexpected params {:?}", req.params())
                    };
                    let _ = ws.send(Message::text(text)).await;
                })
                .ws("/ws/:id", |ws, req| async move {
                    let id = req.param("id").unwrap_or("missing").to_owned();
                    let _ = ws.send(Message::text(id)).await;
                })
        })
        .build()
        .unwrap();
    let server = start(app);
    let addr = server.local_addr();
    block_on(async move {
        let mut client = Client::connect(addr, "/ws/foo").await.unwrap();
        let mut client2 = Client::connect(addr, "/ws").await.unwrap();
        assert_eq!(client.recv().await.unwrap().unwrap(), Message::text("foo"));
        assert_eq!(
            client2.recv().await.unwrap().unwrap(),
            Message::text("empty")
        );
        assert_eq!(client.recv().await.unwrap().unwrap(), close(1000));
        assert_eq!(client2.recv().await.unwrap().unwrap(), close(1000));
    });
    stop(server);
}

/// "Should not throw error when register empty get with prefix"
///
/// `/` registered in a scope with prefix `/baz` also answers at `/baz/`.
#[test]
fn should_not_throw_error_when_register_empty_get_with_prefix() {
    let app = App::builder()
        .register("/baz", |scope| {
            scope.ws("/", |mut ws, _req| async move {
                while let Some(Ok(message)) = ws.recv().await {
                    if message.is_close() || ws.send(Message::text("hi from server")).await.is_err()
                    {
                        break;
                    }
                }
            })
        })
        .build()
        .unwrap();
    let server = start(app);
    let addr = server.local_addr();
    block_on(async move {
        let mut client = Client::connect(addr, "/baz/").await.unwrap();
        assert_eq!(client.response().status(), 101);
        client.close(1000, "").await.unwrap();
        assert_eq!(client.recv().await.unwrap().unwrap(), close(1000));
    });
    stop(server);
}

/// What the app's handlers share (the Rust stand-in for the Fastify instance).
struct Instance {
    name: &'static str,
}

/// "Should expose fastify instance to websocket per-route handler"
///
/// There is no `this`: a handler reaches app-wide state by capturing it. The handler, running
/// on a worker core, sees the very instance the app was built with (same allocation).
#[test]
fn should_expose_fastify_instance_to_websocket_per_route_handler() {
    let instance = Arc::new(Instance { name: "fastify" });
    let (tx, rx) = mpsc::channel();
    let captured = Arc::clone(&instance);
    let app = App::builder()
        .register("", |scope| {
            scope.ws("/ws", move |ws, _req| {
                let _ = tx.send(Arc::clone(&captured));
                async move {
                    let _ = ws.send(Message::text("empty")).await;
                }
            })
        })
        .build()
        .unwrap();
    let server = start(app);
    let addr = server.local_addr();
    block_on(async move {
        let mut client = Client::connect(addr, "/ws").await.unwrap();
        assert_eq!(
            client.recv().await.unwrap().unwrap(),
            Message::text("empty")
        );
        assert_eq!(client.recv().await.unwrap().unwrap(), close(1000));
    });
    let seen = rx.recv_timeout(WAIT).unwrap();
    assert!(Arc::ptr_eq(&seen, &instance), "bound to the app's instance");
    assert_eq!(seen.name, "fastify");
    stop(server);
}

/// A request decoration (`fastify.decorateRequest('str', 'it works!')`).
#[derive(Clone)]
struct Str(&'static str);

/// "Should have access to decorators in per-route handler"
///
/// ringsocket has no `decorateRequest`; a root `on_request` hook that stores a value on every
/// request is the equivalent. The WebSocket handler sees it.
#[test]
fn should_have_access_to_decorators_in_per_route_handler() {
    let app = App::builder()
        .hook(Hook::on_request(|req| async move {
            req.insert(Str("it works!"));
        }))
        .register("", |scope| {
            scope.ws("/ws", |ws, req| async move {
                let decorated = req.get::<Str>().map_or("missing", |s| s.0);
                let text = if decorated == "it works!" {
                    "empty"
                } else {
                    decorated
                };
                let _ = ws.send(Message::text(text)).await;
            })
        })
        .build()
        .unwrap();
    let server = start(app);
    let addr = server.local_addr();
    block_on(async move {
        let mut client = Client::connect(addr, "/ws").await.unwrap();
        assert_eq!(
            client.recv().await.unwrap().unwrap(),
            Message::text("empty")
        );
    });
    stop(server);
}

/// "should call `destroy` when exception is thrown inside async handler"
///
/// An async handler fails; the default error handler logs and terminates the connection: no
/// close frame is sent, so the close is abnormal (1006): the client's next read is the end of
/// the connection.
#[test]
fn should_call_destroy_when_exception_is_thrown_inside_async_handler() {
    let app = App::builder()
        .register("", |scope| {
            scope.ws("/ws", |_ws, _req| async {
                Err::<(), _>(std::io::Error::other("something wrong"))
            })
        })
        .build()
        .unwrap();
    let server = start(app);
    let addr = server.local_addr();
    block_on(async move {
        let mut client = Client::connect(addr, "/ws").await.unwrap();
        let next = client.recv().await;
        assert!(next.is_none(), "no close frame (1006), got {next:?}");
    });
    stop(server);
}

/// "should call default non websocket fastify route when no match is found"
///
/// A plain GET to an unknown path gets Fastify's 404.
#[test]
fn should_call_default_non_websocket_fastify_route_when_no_match_is_found() {
    let app = App::builder()
        .register("", |scope| scope.get("/ws", |_req| async { hello_world() }))
        .build()
        .unwrap();
    let server = start(app);
    let addr = server.local_addr();
    let (status, body) = http_get(addr, "/wrong-route");
    assert_eq!(status, 404);
    assert_eq!(
        body,
        r#"{"statusCode":404,"error":"Not Found","message":"Route GET:/wrong-route not found"}"#
    );
    stop(server);
}

/// "register a non websocket route"
///
/// A plain GET route works as usual next to the WebSocket machinery.
#[test]
fn register_a_non_websocket_route() {
    let app = App::builder()
        .register("", |scope| scope.get("/ws", |_req| async { hello_world() }))
        .build()
        .unwrap();
    let server = start(app);
    let addr = server.local_addr();
    assert_eq!(
        http_get(addr, "/ws"),
        (200, r#"{"hello":"world"}"#.to_owned())
    );
    stop(server);
}
