//! `@fastify/websocket`'s `test/hooks.test.js`, case by case: which Fastify hooks run for an
//! upgrade (onRequest, preParsing, preValidation, preHandler, before the 101), which never do
//! (preSerialization, onSend, onTimeout), and what the client sees when a hook fails or replies
//! (the HTTP answer instead of the 101, the connection closed).
//!
//! Like the originals, each case runs against a listening server (2 workers on 127.0.0.1:0)
//! and talks to it with a real client; hook order is recorded in a shared
//! `Arc<Mutex<Vec<&'static str>>>`.

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream as StdTcpStream,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use bytes::BytesMut;
use common::{block_on_within, http_exchange, http_get, start, upgrade_request, RawResponse};
use ringsocket::{
    client::Client, proto::OpCode, testing, App, CloseFrame, Error, Hook, HttpError, Message,
    Reply, Request, Scope,
};

type Log = Arc<Mutex<Vec<&'static str>>>;

/// Every test here must end well within this.
const LIMIT: Duration = Duration::from_secs(5);

fn new_log() -> Log {
    Arc::new(Mutex::new(Vec::new()))
}

fn entries(log: &Log) -> Vec<&'static str> {
    log.lock().unwrap().clone()
}

/// A hook body (or any `Fn(Request)`) that records `name`.
fn record(
    log: &Log,
    name: &'static str,
) -> impl Fn(Request) -> std::future::Ready<()> + Send + Sync + 'static {
    let log = Arc::clone(log);
    move |_req| {
        log.lock().unwrap().push(name);
        std::future::ready(())
    }
}

/// A WebSocket handler that must never run: it records "handler".
fn forbidden_handler(scope: Scope, path: &str, log: &Log) -> Scope {
    let log = Arc::clone(log);
    scope.ws(path, move |_ws, _req| {
        log.lock().unwrap().push("handler");
        async {}
    })
}

/// The status the upgrade was refused with.
fn refused_status<S>(result: Result<Client<S>, Error>) -> u16 {
    match result {
        Err(Error::UnexpectedResponse { status }) => status.as_u16(),
        Err(other) => panic!("expected an HTTP answer instead of the 101, got {other}"),
        Ok(_) => panic!("expected an HTTP answer instead of the 101, got the upgrade"),
    }
}

/// "Should run onRequest, preValidation, preHandler hooks"
///
/// onRequest, preParsing, preValidation and preHandler all run for an upgrade, in that order
/// and before the handler; then messaging works both ways. (Fastify also asserts
/// `routeOptions.schema.hide === true` for ws routes, a swagger detail with no counterpart
/// here: ringsocket has no schemas.)
#[test]
fn should_run_onrequest_prevalidation_prehandler_hooks() {
    let log = new_log();
    let hook = |name: &'static str| {
        let log = Arc::clone(&log);
        move |req: Request| {
            // Fastify's `request.ws` is true in hooks that run for an upgrade.
            assert!(req.is_websocket(), "{name} sees an upgrade request");
            log.lock().unwrap().push(name);
            async {}
        }
    };
    let handler_log = Arc::clone(&log);
    let app = App::builder()
        .register("", |scope| {
            scope
                .hook(Hook::on_request(hook("onRequest")))
                .hook(Hook::pre_parsing(hook("preParsing")))
                .hook(Hook::pre_validation(hook("preValidation")))
                .hook(Hook::pre_handler(hook("preHandler")))
                .ws("/echo", move |mut ws, _req| {
                    let log = Arc::clone(&handler_log);
                    async move {
                        log.lock().unwrap().push("handler");
                        ws.send(Message::text("hello client")).await.unwrap();
                        let first = ws.recv().await.unwrap().unwrap();
                        if first.as_text() == Some("hello server") {
                            log.lock().unwrap().push("handler got hello server");
                        }
                    }
                })
        })
        .build()
        .unwrap();
    let server = start(app);
    let addr = server.local_addr();
    block_on_within(LIMIT, async move {
        let mut client = Client::connect(addr, "/echo").await.unwrap();
        client.send(Message::text("hello server")).await.unwrap();
        assert_eq!(
            client.recv().await.unwrap().unwrap(),
            Message::text("hello client")
        );
        // The handler returns after the first message: a normal close.
        assert_eq!(
            client.recv().await.unwrap().unwrap(),
            Message::Close(Some(CloseFrame {
                code: 1000,
                reason: String::new()
            }))
        );
    });
    assert_eq!(
        entries(&log),
        [
            "onRequest",
            "preParsing",
            "preValidation",
            "preHandler",
            "handler",
            "handler got hello server"
        ]
    );
    server.shutdown();
    server.wait();
}

/// "Should not run onTimeout hook"
///
/// Fastify arms `request.raw.setTimeout(50)` inside the ws handler; the closest equivalent is
/// the app's request timeout (50 ms), which an upgraded connection must ignore: the handler
/// outlives it and keeps sending, and onTimeout never runs. The same timeout on a slow plain
/// GET does run onTimeout, showing the hook is live.
#[test]
fn should_not_run_ontimeout_hook() {
    let log = new_log();
    let app = App::builder()
        .request_timeout(Duration::from_millis(50))
        .hook(Hook::on_timeout(record(&log, "onTimeout")))
        .ws("/echo", |ws, _req| async move {
            ws.send(Message::text("hello client")).await.unwrap();
            monoio::time::sleep(Duration::from_millis(150)).await;
            ws.send(Message::text("still open after the timeout"))
                .await
                .unwrap();
        })
        .get("/slow", |_req| async {
            monoio::time::sleep(Duration::from_millis(150)).await;
            "too late"
        })
        .build()
        .unwrap();
    let server = start(app);
    let addr = server.local_addr();
    block_on_within(LIMIT, async move {
        let mut client = Client::connect(addr, "/echo").await.unwrap();
        assert_eq!(
            client.recv().await.unwrap().unwrap(),
            Message::text("hello client")
        );
        assert_eq!(
            client.recv().await.unwrap().unwrap(),
            Message::text("still open after the timeout")
        );
    });
    assert_eq!(
        entries(&log),
        Vec::<&str>::new(),
        "onTimeout ran for an upgrade"
    );

    // Control: the same timeout on a plain request runs onTimeout and closes without a reply.
    let raw = http_exchange(
        addr,
        b"GET /slow HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert!(raw.is_empty(), "{:?}", String::from_utf8_lossy(&raw));
    assert_eq!(entries(&log), ["onTimeout"]);
    server.shutdown();
    server.wait();
}

/// An onError hook that records "onError" when it gets the hooks' "Fail" as a 500.
fn on_error_recorder(log: &Log) -> Hook {
    let log = Arc::clone(log);
    Hook::on_error(move |_req, err: HttpError| {
        let entry = if err.status().as_u16() == 500 && err.message() == "Fail" {
            "onError"
        } else {
            "onError with an unexpected error"
        };
        log.lock().unwrap().push(entry);
        async {}
    })
}

/// "Should run onError hook before handler is executed (error thrown in onRequest hook)"
///
/// onRequest fails: onError runs, the client gets 500 instead of the 101, the handler never
/// runs.
#[test]
fn should_run_onerror_hook_before_handler_is_executed_error_thrown_in_onrequest_hook() {
    let log = new_log();
    let app = App::builder()
        .register("", |scope| {
            let scope = scope
                .hook(Hook::on_request(|_req| async { Err::<(), _>("Fail") }))
                .hook(on_error_recorder(&log));
            forbidden_handler(scope, "/echo", &log)
        })
        .build()
        .unwrap();
    let server = start(app);
    let addr = server.local_addr();
    let status = block_on_within(LIMIT, Client::connect(addr, "/echo"));
    assert_eq!(refused_status(status), 500);
    assert_eq!(entries(&log), ["onError"]);
    server.shutdown();
    server.wait();
}

/// "Should run onError hook before handler is executed (error thrown in preValidation hook)"
///
/// As above with an async preValidation that fails after an await.
#[test]
fn should_run_onerror_hook_before_handler_is_executed_error_thrown_in_prevalidation_hook() {
    let log = new_log();
    let app = App::builder()
        .register("", |scope| {
            let scope = scope
                .hook(Hook::pre_validation(|_req| async {
                    monoio::time::sleep(Duration::from_millis(1)).await;
                    Err::<(), _>("Fail")
                }))
                .hook(on_error_recorder(&log));
            forbidden_handler(scope, "/echo", &log)
        })
        .build()
        .unwrap();
    let server = start(app);
    let addr = server.local_addr();
    let status = block_on_within(LIMIT, Client::connect(addr, "/echo"));
    assert_eq!(refused_status(status), 500);
    assert_eq!(entries(&log), ["onError"]);
    server.shutdown();
    server.wait();
}

/// A preValidation hook that fails after an await, as in the originals.
fn failing_pre_validation() -> Hook {
    Hook::pre_validation(|_req| async {
        monoio::time::sleep(Duration::from_millis(1)).await;
        Err::<(), _>("Fail")
    })
}

/// "onError hooks can send a reply and prevent hijacking"
///
/// An onError hook answering 501 wins over the default 500; no upgrade happens.
#[test]
fn onerror_hooks_can_send_a_reply_and_prevent_hijacking() {
    let log = new_log();
    let hook_log = Arc::clone(&log);
    let app = App::builder()
        .register("", |scope| {
            let scope =
                scope
                    .hook(failing_pre_validation())
                    .hook(Hook::on_error(move |_req, _err| {
                        hook_log.lock().unwrap().push("onError");
                        async { Some(Reply::new().code(501).text("there was an error")) }
                    }));
            forbidden_handler(scope, "/echo", &log)
        })
        .build()
        .unwrap();
    let server = start(app);
    let addr = server.local_addr();
    let status = block_on_within(LIMIT, Client::connect(addr, "/echo"));
    assert_eq!(refused_status(status), 501);
    assert_eq!(entries(&log), ["onError"]);

    // The raw answer is the hook's reply, and the connection is closed after it.
    let raw = RawResponse::parse(&http_exchange(addr, &upgrade_request("/echo", "")));
    assert_eq!(raw.status, 501);
    assert_eq!(raw.text(), "there was an error");
    assert_eq!(entries(&log), ["onError", "onError"]);
    server.shutdown();
    server.wait();
}

/// "setErrorHandler functions can send a reply and prevent hijacking"
///
/// The scope's error handler receives the hook's error and answers 501 instead of the 101.
#[test]
fn seterrorhandler_functions_can_send_a_reply_and_prevent_hijacking() {
    let log = new_log();
    let handler_log = Arc::clone(&log);
    let app = App::builder()
        .register("", |scope| {
            let scope = scope
                .hook(failing_pre_validation())
                .error_handler(move |_req, err| {
                    let entry = if err.message() == "Fail" {
                        "errorHandler"
                    } else {
                        "errorHandler with an unexpected error"
                    };
                    handler_log.lock().unwrap().push(entry);
                    async { Reply::new().code(501).text("there was an error") }
                });
            forbidden_handler(scope, "/echo", &log)
        })
        .build()
        .unwrap();
    let server = start(app);
    let addr = server.local_addr();
    let status = block_on_within(LIMIT, Client::connect(addr, "/echo"));
    assert_eq!(refused_status(status), 501);
    assert_eq!(entries(&log), ["errorHandler"]);
    server.shutdown();
    server.wait();
}

/// "Should not run onError hook if reply was already hijacked (error thrown in websocket
/// handler)"
///
/// After the 101 an error from the ws handler goes to the WebSocket error handler, whose
/// default logs and terminates: the client sees the connection end without a close frame
/// (`ws`'s 1006), and onError never runs.
#[test]
fn should_not_run_onerror_hook_if_reply_was_already_hijacked_error_thrown_in_websocket_handler() {
    let log = new_log();
    let app = App::builder()
        .register("", |scope| {
            scope
                .hook(Hook::on_error(record_error(&log)))
                .ws("/echo", |_ws, _req| async { Err::<(), _>("Fail") })
        })
        .build()
        .unwrap();
    let server = start(app);
    let addr = server.local_addr();
    block_on_within(LIMIT, async move {
        let mut client = Client::connect(addr, "/echo").await.unwrap();
        let next = client.recv().await;
        assert!(
            !matches!(next, Some(Ok(_))),
            "the connection must end without a close frame (1006), got {next:?}"
        );
    });
    assert_eq!(
        entries(&log),
        Vec::<&str>::new(),
        "onError ran after the upgrade"
    );
    server.shutdown();
    server.wait();
}

fn record_error(
    log: &Log,
) -> impl Fn(Request, HttpError) -> std::future::Ready<()> + Send + Sync + 'static {
    let log = Arc::clone(log);
    move |_req, _err| {
        log.lock().unwrap().push("onError");
        std::future::ready(())
    }
}

/// "Should not run preSerialization/onSend hooks"
///
/// Neither hook runs for a ws route, whose handler still delivers its message. A plain JSON
/// route in the same scope runs both, showing the hooks are live.
#[test]
fn should_not_run_preserialization_onsend_hooks() {
    let log = new_log();
    let send_log = Arc::clone(&log);
    let app = App::builder()
        .register("", |scope| {
            let scope = scope
                .hook(Hook::on_send(move |_req, reply| {
                    send_log.lock().unwrap().push("onSend");
                    async move { reply }
                }))
                .ws("/echo", |ws, _req| async move {
                    ws.send(Message::text("hello client")).await.unwrap();
                });
            with_pre_serialization(scope, &log)
        })
        .build()
        .unwrap();
    let server = start(app);
    let addr = server.local_addr();
    block_on_within(LIMIT, async move {
        let mut client = Client::connect(addr, "/echo").await.unwrap();
        assert_eq!(
            client.recv().await.unwrap().unwrap(),
            Message::text("hello client")
        );
    });
    assert_eq!(entries(&log), Vec::<&str>::new());

    // Control: a plain request in the same scope goes through both.
    let control = http_get(addr, "/json");
    assert_eq!(control.status, 200);
    #[cfg(feature = "json")]
    assert_eq!(entries(&log), ["preSerialization", "onSend"]);
    #[cfg(not(feature = "json"))]
    assert_eq!(entries(&log), ["onSend"]);
    server.shutdown();
    server.wait();
}

#[cfg(feature = "json")]
fn with_pre_serialization(scope: Scope, log: &Log) -> Scope {
    let log = Arc::clone(log);
    scope
        .hook(Hook::pre_serialization(move |_req, value| {
            log.lock().unwrap().push("preSerialization");
            async move { Ok::<_, HttpError>(value) }
        }))
        .get("/json", |_req| async {
            ringsocket::Json(std::collections::BTreeMap::from([("hello", "world")]))
        })
}

#[cfg(not(feature = "json"))]
fn with_pre_serialization(scope: Scope, _log: &Log) -> Scope {
    scope.get("/json", |_req| async { "{}" })
}

/// "Should not hijack reply for a normal http request in the internal onError hook"
///
/// A plain GET whose handler fails gets an ordinary HTTP error answer naming the error (the
/// app also has a ws route, as the plugin is registered in the original).
#[test]
fn should_not_hijack_reply_for_a_normal_http_request_in_the_internal_onerror_hook() {
    let app = App::builder()
        .ws("/ws", |_ws, _req| async {})
        .register("", |scope| {
            scope.get("/", |_req| async { Err::<&str, _>("Fail") })
        })
        .build()
        .unwrap();
    let server = start(app);
    let response = http_get(server.local_addr(), "/");
    assert_eq!(response.status, 500);
    assert!(response.text().contains("Fail"), "{}", response.text());
    server.shutdown();
    server.wait();
}

/// Reads server frames (unmasked, payload under 126 bytes) that follow a response head.
struct RawFrames {
    stream: StdTcpStream,
    buf: Vec<u8>,
}

impl RawFrames {
    fn read_more(&mut self) {
        let mut chunk = [0u8; 4096];
        let n = loop {
            match self.stream.read(&mut chunk) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => break other.expect("read"),
            }
        };
        assert!(n > 0, "connection closed early: {:?}", self.buf);
        self.buf.extend_from_slice(&chunk[..n]);
    }

    fn head(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 4);
                return head;
            }
            self.read_more();
        }
    }

    /// The next frame as (opcode byte, payload).
    fn frame(&mut self) -> (u8, Vec<u8>) {
        loop {
            if self.buf.len() >= 2 {
                let len = usize::from(self.buf[1] & 0x7f);
                assert!(len < 126, "test helper handles short frames only");
                if self.buf.len() >= 2 + len {
                    let opcode = self.buf[0] & 0x0f;
                    let payload = self.buf[2..2 + len].to_vec();
                    self.buf.drain(..2 + len);
                    return (opcode, payload);
                }
            }
            self.read_more();
        }
    }
}

/// "Should run async hooks and still deliver quickly sent messages"
///
/// A 25 ms async preValidation; the client's first message is not lost. Checked twice: with
/// the client sending as soon as the 101 arrives (before the handler can have called
/// `recv`), and, harder, with the first frame written in the same packet as the upgrade
/// request, so that it arrives while the hook is still sleeping.
#[test]
fn should_run_async_hooks_and_still_deliver_quickly_sent_messages() {
    let delays = Arc::new(AtomicUsize::new(0));
    let hook_delays = Arc::clone(&delays);
    let app = App::builder()
        .register("", |scope| {
            scope
                .hook(Hook::pre_validation(move |_req| {
                    let delays = Arc::clone(&hook_delays);
                    async move {
                        monoio::time::sleep(Duration::from_millis(25)).await;
                        delays.fetch_add(1, Ordering::SeqCst);
                    }
                }))
                .ws("/echo", |mut ws, _req| async move {
                    ws.send(Message::text("hello client")).await.unwrap();
                    if let Some(Ok(Message::Text(text))) = ws.recv().await {
                        ws.send(Message::text(format!("got {text}"))).await.unwrap();
                    }
                })
        })
        .build()
        .unwrap();
    let server = start(app);
    let addr = server.local_addr();

    block_on_within(LIMIT, async move {
        let started = Instant::now();
        let mut client = Client::connect(addr, "/echo").await.unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(25),
            "the hook ran"
        );
        client.send(Message::text("hello server")).await.unwrap();
        assert_eq!(
            client.recv().await.unwrap().unwrap(),
            Message::text("hello client")
        );
        assert_eq!(
            client.recv().await.unwrap().unwrap(),
            Message::text("got hello server")
        );
    });

    // The first frame travels with the upgrade request, during the hook's sleep.
    let mut request = upgrade_request("/echo", "");
    let mut frame = BytesMut::new();
    ringsocket::proto::encode_frame(
        &mut frame,
        true,
        false,
        OpCode::Text,
        Some([7, 3, 1, 9]),
        b"hello server",
    );
    request.extend_from_slice(&frame);
    let mut stream = StdTcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    stream.write_all(&request).unwrap();
    let mut raw = RawFrames {
        stream,
        buf: Vec::new(),
    };
    let head = raw.head();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(raw.frame(), (0x1, b"hello client".to_vec()));
    assert_eq!(raw.frame(), (0x1, b"got hello server".to_vec()));
    assert_eq!(delays.load(Ordering::SeqCst), 2);
    drop(raw);
    server.shutdown();
    server.wait();
}

/// A preValidation hook answering 404 "not found", as in the last two originals.
fn not_found_hook() -> Hook {
    Hook::pre_validation(|_req| async { Some(Reply::new().code(404).text("not found")) })
}

/// "Should not hijack reply for an normal request to a websocket route that is sent a normal
/// HTTP response in a hook"
///
/// A plain GET to a ws route whose preValidation answers 404 "not found": that reply is what
/// the client reads (the route's hooks run, as in Fastify, before the 404 a plain request to
/// a ws-only route would otherwise get).
#[test]
fn should_not_hijack_reply_for_an_normal_request_to_a_websocket_route_that_is_sent_a_normal_http_response_in_a_hook(
) {
    let log = new_log();
    let app = App::builder()
        .register("", |scope| {
            forbidden_handler(scope.hook(not_found_hook()), "/echo", &log)
        })
        .build()
        .unwrap();
    let server = start(app);
    let response = http_get(server.local_addr(), "/echo");
    server.shutdown();
    server.wait();
    assert_eq!(response.status, 404);
    assert!(
        response.text().to_lowercase().contains("not found"),
        "the hook's reply must be sent, got body {:?}",
        response.text()
    );
    assert_eq!(entries(&log), Vec::<&str>::new());
}

/// Counts events logged at ERROR (Fastify's level >= 50; tracing has no fatal).
struct CountErrors(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountErrors {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if *event.metadata().level() == tracing::Level::ERROR {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// "Should not hijack reply for an WS request to a WS route that gets sent a normal HTTP
/// response in a hook"
///
/// An upgrade whose preValidation answers 404: the client gets that answer instead of the 101
/// (`ws`'s 'error' event), the handler never runs, and nothing is logged at ERROR. The log
/// check uses `inject_ws` so that everything runs on this thread, under a subscriber of its
/// own; a failing hook under the same subscriber does log an error, showing the check is live.
#[test]
fn should_not_hijack_reply_for_an_ws_request_to_a_ws_route_that_gets_sent_a_normal_http_response_in_a_hook(
) {
    use tracing_subscriber::layer::SubscriberExt;

    let log = new_log();
    let app = App::builder()
        .register("", |scope| {
            forbidden_handler(scope.hook(not_found_hook()), "/echo", &log)
        })
        .register("/control", |scope| {
            scope
                .hook(Hook::on_request(|_req| async { Err::<(), _>("Fail") }))
                .ws("/", |_ws, _req| async {})
        })
        .build()
        .unwrap();

    let server = start(app.clone());
    let addr = server.local_addr();
    let status = block_on_within(LIMIT, Client::connect(addr, "/echo"));
    assert_eq!(refused_status(status), 404);
    server.shutdown();
    server.wait();

    let errors = Arc::new(AtomicUsize::new(0));
    let subscriber = tracing_subscriber::registry().with(CountErrors(Arc::clone(&errors)));
    tracing::subscriber::with_default(subscriber, || {
        testing::run(async {
            let refused = monoio::time::timeout(LIMIT, app.inject_ws("/echo").connect())
                .await
                .expect("timed out");
            assert_eq!(refused_status(refused), 404);
            assert_eq!(errors.load(Ordering::SeqCst), 0, "logged at ERROR");

            let control = monoio::time::timeout(LIMIT, app.inject_ws("/control").connect())
                .await
                .expect("timed out");
            assert_eq!(refused_status(control), 500);
            assert!(errors.load(Ordering::SeqCst) > 0, "the log capture works");
        });
    });
    assert_eq!(entries(&log), Vec::<&str>::new());
}
