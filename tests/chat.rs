//! The chat example over a real server with 2 workers: members of a room on different cores
//! hear each other (and not themselves), `/who` counts the room on every core, other rooms
//! hear nothing, and `/` serves the page.

mod common;

#[allow(dead_code)]
#[path = "../examples/chat.rs"]
mod chat;

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use common::{block_on_within, http_get, start};
use ringsocket::{client::Client, Clients, CloseFrame, Message};

/// Every test here must end well within this.
const LIMIT: Duration = Duration::from_secs(5);

/// A chat member and its id as the server prints it (`core:serial`).
struct Member {
    client: Client,
    id: String,
}

impl Member {
    /// Joins `room` and asks for its own id (`/id`), once the server counts the subscription.
    async fn join(addr: SocketAddr, clients: &Clients, room: &str) -> Member {
        let before = clients.subscribers(room);
        let client = Client::connect(addr, &format!("/chat/{room}"))
            .await
            .unwrap();
        settle(clients, room, before + 1).await;
        let mut member = Member {
            client,
            id: String::new(),
        };
        member.id = member.ask("/id").await;
        member
    }

    fn core(&self) -> usize {
        let core = self.id.split(':').next().and_then(|c| c.parse().ok());
        core.unwrap_or_else(|| panic!("not an id: {:?}", self.id))
    }

    async fn say(&mut self, text: &str) {
        self.client
            .send(Message::text(text.to_owned()))
            .await
            .unwrap();
    }

    async fn ask(&mut self, command: &str) -> String {
        self.say(command).await;
        self.next().await
    }

    async fn next(&mut self) -> String {
        match monoio::time::timeout(Duration::from_secs(2), self.client.recv()).await {
            Ok(Some(Ok(Message::Text(text)))) => text.as_str().to_owned(),
            Ok(other) => panic!("{}: expected text, got {other:?}", self.id),
            Err(_) => panic!("{}: nothing within 2 s", self.id),
        }
    }

    async fn leave(mut self) {
        self.client.close(1000, "").await.unwrap();
        let answer = self.client.recv().await.unwrap().unwrap();
        let normal = CloseFrame {
            code: 1000,
            reason: String::new(),
        };
        assert_eq!(answer, Message::Close(Some(normal)));
        assert!(self.client.recv().await.is_none());
    }
}

/// Waits (at most 2 s) until `room` has `members`.
async fn settle(clients: &Clients, room: &str, members: usize) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while clients.subscribers(room) != members {
        assert!(
            Instant::now() < deadline,
            "{room}: {} members, expected {members}",
            clients.subscribers(room)
        );
        monoio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[test]
fn members_on_different_cores_chat_and_who_counts_the_room() {
    let server = start(chat::app());
    let addr = server.local_addr();
    let clients = server.clients();
    block_on_within(LIMIT, async move {
        // Join the lobby until it has a member on each core (the kernel picks the core).
        let mut lobby: Vec<Member> = Vec::new();
        for _ in 0..40 {
            lobby.push(Member::join(addr, &clients, "lobby").await);
            if lobby.iter().any(|m| m.core() == 0) && lobby.iter().any(|m| m.core() == 1) {
                break;
            }
        }
        let mut by_id: Vec<String> = lobby.iter().map(|m| m.id.clone()).collect();
        by_id.sort();
        let mut listed: Vec<String> = clients
            .ids()
            .await
            .iter()
            .map(|id| id.to_string())
            .collect();
        listed.sort();
        assert_eq!(listed, by_id, "/id names the server's clients");
        let a = lobby.iter().position(|m| m.core() == 0).expect("core 0");
        let b = lobby.iter().position(|m| m.core() == 1).expect("core 1");
        let mut kitchen = Member::join(addr, &clients, "kitchen").await;

        // Each line reaches every other member of the room, on both cores, as `ID: line`.
        for speaker in [a, b] {
            let line = format!("hello from core {}", lobby[speaker].core());
            lobby[speaker].say(&line).await;
            let heard = format!("{}: {line}", lobby[speaker].id);
            for (i, member) in lobby.iter_mut().enumerate() {
                if i != speaker {
                    assert_eq!(member.next().await, heard);
                }
            }
        }

        // `/who` counts the room on both cores, answered to the asker only: the speaker's
        // next message is its answer, so it got no copy of its own line either.
        let n = lobby.len();
        for member in lobby.iter_mut() {
            assert_eq!(member.ask("/who").await, format!("{n} in room lobby"));
        }
        assert_eq!(kitchen.ask("/who").await, "1 in room kitchen");

        // The lobby hears nothing of the kitchen: once the kitchen's line is out (its `/who`
        // is answered after it), the next thing lobby members hear is the lobby's own line.
        kitchen.say("anyone?").await;
        assert_eq!(kitchen.ask("/who").await, "1 in room kitchen");
        lobby[a].say("still here").await;
        let heard = format!("{}: still here", lobby[a].id);
        for (i, member) in lobby.iter_mut().enumerate() {
            if i != a {
                assert_eq!(member.next().await, heard);
            }
        }
        // And the kitchen nothing of the lobby.
        assert_eq!(kitchen.ask("/who").await, "1 in room kitchen");

        // Leaving shrinks the room.
        let gone = lobby.remove(b);
        gone.leave().await;
        settle(&clients, "lobby", n - 1).await;
        let a = lobby.iter().position(|m| m.core() == 0).unwrap();
        assert_eq!(
            lobby[a].ask("/who").await,
            format!("{} in room lobby", n - 1)
        );
    });
    server.shutdown();
    server.wait();
}

#[test]
fn the_page_is_served_at_the_root() {
    let server = start(chat::app());
    let res = http_get(server.local_addr(), "/");
    assert_eq!(res.status, 200);
    assert_eq!(
        res.header("content-type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    let page = res.text();
    assert!(page.contains("WebSocket"), "{page}");
    assert!(page.contains("new WebSocket("), "{page}");
    assert!(page.contains("/chat/"), "{page}");
    server.shutdown();
    server.wait();
}
