//! The chat, on several processes: rooms are topics, and topics cross processes through Redis
//! or NATS, so members of one room meet whichever node (and core) accepted them.
//!
//! ```text
//! redis-server --port 6379 &
//! cargo run --features redis,nats --example cluster_chat -- --port 3001 --redis redis://127.0.0.1:6379/
//! cargo run --features redis,nats --example cluster_chat -- --port 3002 --redis redis://127.0.0.1:6379/
//! # then open http://127.0.0.1:3001/#lobby and http://127.0.0.1:3002/#lobby
//! # (or: nats-server -p 4222 &, and --nats nats://127.0.0.1:4222 instead of --redis)
//! ```
//!
//! - `GET /` serves a small page that joins the room named by the page's hash.
//! - `GET /cluster` answers this node's broker link in one line:
//!   `node=ID connected=true topics=1 published=5 failed=0 received=7 ignored=0 reconnects=0`
//!   (see `ringsocket::BrokerStatus`).
//! - `ws /chat/:room` joins the room. Every text message goes to the other members, on every
//!   node, as `ID: text` (`ID` is the sender's connection id, `core:serial`, unique on its
//!   node only); the sender gets no copy.
//! - `/all TEXT` goes to every client of every node but the sender, as `ID to all: TEXT`.
//! - `/who` is answered to the sender with the room's size on this node and on all of them
//!   (asked over the broker): `3 in room lobby here, 5 on 2 nodes`.
//! - `/id` is answered to the sender with its own id.
//!
//! Flags: `--redis URL` or `--nats URL` (one of them; the example needs the `redis` or
//! `nats` feature), `--prefix P` (channel prefix, default `ringsocket`), and the common
//! `--host`, `--port`, `--workers`. Prints `listening on ADDR` when ready.

use ringsocket::{App, Message, Reply, Server, WebSocket, WsOptions};

/// The page at `/`.
const PAGE: &str = r#"<!doctype html>
<html>
<head><meta charset="utf-8"><title>ringsocket cluster chat</title></head>
<body style="font: 15px sans-serif; max-width: 40em; margin: 2em auto">
<h1>Room <span id="room"></span></h1>
<ul id="log" style="list-style: none; padding: 0"></ul>
<form id="form"><input id="text" autocomplete="off" autofocus><button>Send</button></form>
<script>
  const room = decodeURIComponent(location.hash.slice(1)) || "lobby";
  document.getElementById("room").textContent = room;
  const log = document.getElementById("log");
  const text = document.getElementById("text");
  const show = (line) => { const li = document.createElement("li"); li.textContent = line; log.appendChild(li); };
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/chat/${encodeURIComponent(room)}`);
  ws.onmessage = (event) => show(event.data);
  ws.onclose = (event) => show("(disconnected: " + event.code + ")");
  document.getElementById("form").onsubmit = (event) => {
    event.preventDefault();
    if (!text.value || ws.readyState !== WebSocket.OPEN) return;
    ws.send(text.value);
    if (!text.value.startsWith("/")) show("you: " + text.value);
    text.value = "";
  };
  addEventListener("hashchange", () => location.reload());
</script>
</body>
</html>
"#;

/// The app: the page, the broker status line, and the rooms.
pub fn app() -> App {
    App::builder()
        .websocket(WsOptions::new().max_payload(4096))
        .get("/", |_req| async {
            Reply::new()
                .header("content-type", "text/html; charset=utf-8")
                .text(PAGE)
        })
        .get("/cluster", |req| {
            let line = match req.clients().broker() {
                Some(s) => format!(
                    "node={} connected={} topics={} published={} failed={} received={} ignored={} reconnects={}",
                    s.node_id,
                    s.connected,
                    s.topics,
                    s.published,
                    s.failed,
                    s.received,
                    s.ignored,
                    s.reconnects
                ),
                None => "no broker".to_owned(),
            };
            async move { Reply::new().text(line) }
        })
        .ws("/chat/:room", |ws, req| {
            let room = req.param("room").unwrap_or("lobby").to_owned();
            chat(ws, room)
        })
        .build()
        .expect("valid routes")
}

/// One member of `room`, until it leaves.
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
                let clients = ws.clients();
                let here = clients.subscribers(&room);
                match clients.cluster_subscribers(&room).await {
                    Ok(all) => format!(
                        "{here} in room {room} here, {} on {} nodes",
                        all.total, all.nodes
                    ),
                    Err(e) => format!("{here} in room {room} here ({e})"),
                }
            }
            "/id" => ws.id().to_string(),
            line => {
                // What the other nodes missed (broker down) is counted in `/cluster`.
                let _ = match line.strip_prefix("/all ") {
                    Some(all) => ws
                        .clients()
                        .broadcast_except(ws.id(), format!("{} to all: {all}", ws.id())),
                    None => ws.publish(&room, format!("{}: {line}", ws.id())),
                };
                continue;
            }
        };
        if ws.send(Message::text(answer)).await.is_err() {
            break;
        }
    }
}

/// The broker named by `--redis URL` or `--nats URL`.
#[derive(Debug, Clone)]
pub enum BrokerFlag {
    /// `--redis URL`.
    Redis(String),
    /// `--nats URL`.
    Nats(String),
}

/// `server` as a node of the cluster that `broker` joins, with channel prefix `prefix`.
pub fn with_broker(server: Server, broker: &BrokerFlag, prefix: &str) -> Result<Server, String> {
    match broker {
        #[cfg(feature = "redis")]
        BrokerFlag::Redis(url) => {
            let broker = ringsocket::RedisBroker::new(url).map_err(|e| e.to_string())?;
            Ok(server.broker(broker.prefix(prefix)))
        }
        #[cfg(feature = "nats")]
        BrokerFlag::Nats(url) => {
            let broker = ringsocket::NatsBroker::new(url)
                .prefix(prefix)
                .map_err(|e| e.to_string())?;
            Ok(server.broker(broker))
        }
        #[allow(unreachable_patterns)]
        other => {
            let _ = (server, prefix);
            Err(format!(
                "{other:?}: this build lacks the feature (cargo run --features redis,nats ...)"
            ))
        }
    }
}

mod support;

fn main() {
    support::init_logging();
    let name = "cluster_chat";
    let args = support::Args::parse(name, &["--redis", "--nats", "--prefix"]);
    let broker = match (
        args.get::<String>(name, "--redis"),
        args.get::<String>(name, "--nats"),
    ) {
        (Some(url), None) => BrokerFlag::Redis(url),
        (None, Some(url)) => BrokerFlag::Nats(url),
        _ => {
            eprintln!("{name}: give one of --redis URL or --nats URL");
            std::process::exit(2);
        }
    };
    let prefix = args
        .get::<String>(name, "--prefix")
        .unwrap_or_else(|| "ringsocket".into());
    match with_broker(Server::new(app()), &broker, &prefix) {
        Ok(server) => support::serve_server(name, server, &args),
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::exit(2);
        }
    }
}
