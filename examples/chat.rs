//! A chat with rooms, on every core: each room is a topic, so members of one room meet
//! whichever core accepted them.
//!
//! ```text
//! cargo run --example chat -- --port 3000
//! # then open http://127.0.0.1:3000/ in two browser tabs
//! ```
//!
//! - `GET /` serves a small page (inline JavaScript) that joins a room and shows its messages.
//! - `ws /chat/:room` joins the room. Every text message is sent to the other members as
//!   `ID: text` (`ID` is the sender's connection id, `core:serial`); the sender gets no copy
//!   (the page shows its own lines itself, as `you: text`).
//! - `/who` is answered to the sender only, with the room's size: `3 in room lobby`.
//! - `/id` is answered to the sender only, with its own id (what others see before its lines).
//!
//! Messages are limited to 4 KiB; binary messages are ignored.
//!
//! Flags: `--host` (default 127.0.0.1), `--port` (default 3000; 0 picks a free one),
//! `--workers` (default: the CPUs this process may use). Prints `listening on ADDR` when
//! ready; Ctrl-C shuts down gracefully.

use ringsocket::{App, Message, Reply, WebSocket, WsOptions};

/// The page at `/`.
const PAGE: &str = r#"<!doctype html>
<html>
<head>
<meta charset="utf-8">
<title>ringsocket chat</title>
<style>
  body { font: 15px sans-serif; max-width: 40em; margin: 2em auto; }
  #log { list-style: none; padding: 0; height: 60vh; overflow-y: auto; border: 1px solid #ccc; }
  #log li { padding: 2px 6px; }
  #log li.me { color: #555; }
  form { display: flex; gap: 4px; margin-top: 4px; }
  #text { flex: 1; }
</style>
</head>
<body>
<h1>Room <span id="room"></span></h1>
<ul id="log"></ul>
<form id="form"><input id="text" autocomplete="off" autofocus
  placeholder="say something, or /who"><button>Send</button></form>
<script>
  // The room comes from the page's hash: /#lobby (default), /#kitchen, ...
  const room = decodeURIComponent(location.hash.slice(1)) || "lobby";
  document.getElementById("room").textContent = room;
  const log = document.getElementById("log");
  const text = document.getElementById("text");
  function show(line, mine) {
    const li = document.createElement("li");
    li.textContent = line;
    if (mine) li.className = "me";
    log.appendChild(li);
    log.scrollTop = log.scrollHeight;
  }
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/chat/${encodeURIComponent(room)}`);
  ws.onopen = () => show("(joined " + room + ")");
  ws.onmessage = (event) => show(event.data);
  ws.onclose = (event) => show("(disconnected: " + event.code + ")");
  document.getElementById("form").onsubmit = (event) => {
    event.preventDefault();
    if (!text.value || ws.readyState !== WebSocket.OPEN) return;
    ws.send(text.value);
    if (!text.value.startsWith("/")) show("you: " + text.value, true);
    text.value = "";
  };
  addEventListener("hashchange", () => location.reload());
</script>
</body>
</html>
"#;

/// The app: the page and the rooms.
pub fn app() -> App {
    App::builder()
        .websocket(WsOptions::new().max_payload(4096))
        .get("/", |_req| async {
            Reply::new()
                .header("content-type", "text/html; charset=utf-8")
                .text(PAGE)
        })
        .ws("/chat/:room", |ws, req| {
            let room = req.param("room").unwrap_or("lobby").to_owned();
            chat(ws, room)
        })
        .build()
        .expect("valid routes")
}

/// One member of `room`, until it leaves (its subscription ends with the connection).
async fn chat(mut ws: WebSocket, room: String) {
    ws.subscribe(&room);
    while let Some(Ok(message)) = ws.recv().await {
        let Message::Text(text) = message else {
            if message.is_close() {
                break;
            }
            continue;
        };
        let answer = match text.as_str() {
            "/who" => {
                let members = ws.clients().subscribers(&room);
                format!("{members} in room {room}")
            }
            "/id" => ws.id().to_string(),
            line => {
                // Lost only for a member whose queue is full (it is then closed with 1008).
                let _ = ws.publish(&room, format!("{}: {line}", ws.id()));
                continue;
            }
        };
        if ws.send(Message::text(answer)).await.is_err() {
            break;
        }
    }
}

mod support;

fn main() {
    support::init_logging();
    let args = support::Args::parse("chat", &[]);
    support::serve("chat", app(), &args);
}
