//! Handlers and hooks run on the core that accepted the connection, so their futures need not
//! be `Send`: each one here holds an `Rc<RefCell<..>>` across an `.await`. That this file
//! compiles is the test; `assert_not_send` also proves at compile time that the futures really
//! are not `Send` (so the test cannot pass by accident), and the app is then driven through
//! `inject` and `inject_ws` to show it works.

mod common;

use std::{cell::RefCell, rc::Rc, time::Duration};

use common::block_on_within;
use ringsocket::{App, Hook, HttpError, Message, Reply, Request, WebSocket};

/// Ambiguous for `Send` types, so `assert_not_send` fails to compile for them (the trick of
/// `static_assertions::assert_not_impl_any`).
trait AmbiguousIfSend<A> {
    fn check(&self) {}
}
impl<T: ?Sized> AmbiguousIfSend<()> for T {}
impl<T: ?Sized + Send> AmbiguousIfSend<u8> for T {}

/// The future type a handler or hook returns, as a value the check can look at.
struct FutureOf<Fut>(std::marker::PhantomData<Fut>);

fn ws_future_of<F, Fut>(_: &F) -> FutureOf<Fut>
where
    F: Fn(WebSocket, Request) -> Fut,
{
    FutureOf(std::marker::PhantomData)
}

fn request_future_of<F, Fut>(_: &F) -> FutureOf<Fut>
where
    F: Fn(Request) -> Fut,
{
    FutureOf(std::marker::PhantomData)
}

fn error_future_of<F, Fut>(_: &F) -> FutureOf<Fut>
where
    F: Fn(Request, HttpError) -> Fut,
{
    FutureOf(std::marker::PhantomData)
}

/// Compiles only if the future type is not `Send`: for a `Send` one both impls apply and
/// `check` is ambiguous. A macro, so that the check happens where the type is concrete (in a
/// generic function `Fut: Send` could never be proven and the check would pass vacuously).
macro_rules! assert_not_send {
    ($future_of:expr) => {
        // `FutureOf<Fut>` is `Send` exactly when `Fut` is.
        AmbiguousIfSend::check(&$future_of)
    };
}

/// A local counter, awaited across: each future below holds an `Rc<RefCell<..>>` over an
/// `.await` (the `Request`, `WebSocket` and monoio timer it also holds are not `Send` either).
async fn bump(counter: &Rc<RefCell<u32>>) -> u32 {
    monoio::time::sleep(Duration::from_millis(1)).await;
    *counter.borrow_mut() += 1;
    *counter.borrow()
}

async fn on_request(req: Request) {
    let local = Rc::new(RefCell::new(0u32));
    let n = bump(&local).await;
    req.insert(format!("onRequest bumped {n}"));
}

async fn pre_validation(req: Request) -> Option<Reply> {
    let local = Rc::new(RefCell::new(10u32));
    bump(&local).await;
    if req.header("x-deny").is_some() {
        return Some(
            Reply::new()
                .code(403)
                .text(format!("denied at {}", local.borrow())),
        );
    }
    None
}

async fn on_error(_req: Request, err: HttpError) -> Option<Reply> {
    let local = Rc::new(RefCell::new(0u32));
    bump(&local).await;
    Some(
        Reply::new()
            .code(502)
            .text(format!("{} ({})", err.message(), local.borrow())),
    )
}

async fn http_handler(req: Request) -> String {
    let local = Rc::new(RefCell::new(41u32));
    let n = bump(&local).await;
    format!("{} / http {n}", req.get::<String>().unwrap_or_default())
}

async fn failing_handler(_req: Request) -> Result<&'static str, &'static str> {
    let local = Rc::new(RefCell::new(0u32));
    bump(&local).await;
    Err("failed after a local await")
}

async fn ws_handler(mut ws: WebSocket, req: Request) {
    let local = Rc::new(RefCell::new(0u32));
    while let Some(Ok(message)) = ws.recv().await {
        if message.is_close() {
            break;
        }
        let n = bump(&local).await;
        let text = format!(
            "{} / message {n}: {}",
            req.get::<String>().unwrap_or_default(),
            message.as_text().unwrap_or("")
        );
        if ws.send(Message::text(text)).await.is_err() {
            break;
        }
    }
}

fn app() -> App {
    // The checks live in a function other than the async fns themselves: an async block's
    // auto traits cannot be asked for inside the body that defines it.
    assert_not_send!(request_future_of(&on_request));
    assert_not_send!(request_future_of(&pre_validation));
    assert_not_send!(error_future_of(&on_error));
    assert_not_send!(request_future_of(&http_handler));
    assert_not_send!(request_future_of(&failing_handler));
    assert_not_send!(ws_future_of(&ws_handler));

    App::builder()
        .hook(Hook::on_request(on_request))
        .hook(Hook::pre_validation(pre_validation))
        .hook(Hook::on_error(on_error))
        .get("/http", http_handler)
        .get("/fail", failing_handler)
        .ws("/ws", ws_handler)
        .build()
        .unwrap()
}

#[test]
fn not_send_ws_handler_and_hooks_run_through_inject_ws() {
    let app = app();
    block_on_within(Duration::from_secs(5), async move {
        let mut client = app.inject_ws("/ws").connect().await.unwrap();
        for (n, text) in [(1, "one"), (2, "two")] {
            client.send(Message::text(text)).await.unwrap();
            assert_eq!(
                client.recv().await.unwrap().unwrap(),
                Message::text(format!("onRequest bumped 1 / message {n}: {text}"))
            );
        }
        let err = app
            .inject_ws("/ws")
            .header("x-deny", "1")
            .connect()
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "Unexpected server response: 403");
    });
}

#[test]
fn not_send_http_handler_and_hooks_run_through_inject() {
    let app = app();
    block_on_within(Duration::from_secs(5), async move {
        let res = app
            .inject(http::Request::get("/http").body(()).unwrap())
            .await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.text(), "onRequest bumped 1 / http 42");

        let res = app
            .inject(
                http::Request::get("/http")
                    .header("x-deny", "1")
                    .body(())
                    .unwrap(),
            )
            .await;
        assert_eq!(res.status(), 403);
        assert_eq!(res.text(), "denied at 11");

        let res = app
            .inject(http::Request::get("/fail").body(()).unwrap())
            .await;
        assert_eq!(res.status(), 502);
        assert_eq!(res.text(), "failed after a local await (1)");
    });
}
