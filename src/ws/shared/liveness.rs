//! The liveness sweep's side of a connection's state: pings, the dead-peer cut, the idle
//! timeout and the maximum lifetime.

use std::time::Instant;

use super::{Phase, Shared, Stamp};
use crate::proto::OpCode;

impl Shared {
    /// One look by the core's liveness sweep at `now` (see `WsOptions::ping_interval`,
    /// `idle_timeout` and `max_lifetime`). Only an open connection is judged: a closing one
    /// has its close timer.
    pub(crate) fn check_liveness(&mut self, now: Instant) {
        if self.phase != Phase::Open || self.terminated {
            return;
        }
        let now = Stamp::at(now);
        let since = |t: Stamp| t.until(now);
        if let Some(max) = self.options.max_lifetime {
            if since(self.opened) >= max {
                self.start_close(1000, "max lifetime reached");
                return;
            }
        }
        if self.inbound_full() {
            // Our reader waits for the handler to take earlier messages, so the peer cannot be
            // heard now: it is not judged (the reader refreshes `last_heard` when it resumes).
            return;
        }
        if let Some(interval) = self.options.ping_interval {
            let unanswered = self.last_ping_sent.filter(|&sent| sent >= self.last_heard);
            if let Some(sent) = unanswered {
                if since(sent) >= self.options.pong_timeout {
                    // A half-open socket takes no close frame: cut it. The report then shows no
                    // close received and counts what was not written.
                    tracing::debug!(
                        silent_for = ?since(self.last_heard),
                        "no answer to the ping within pong_timeout: terminating"
                    );
                    self.peer_gone = true;
                    self.terminate();
                    return;
                }
            } else if since(self.last_heard) >= interval
                && self.queue_control(OpCode::Ping, &[]).is_ok()
            {
                self.last_ping_sent = Some(now);
            }
        }
        if let Some(idle) = self.options.idle_timeout {
            if since(self.last_message) >= idle {
                self.start_close(1000, "idle timeout");
            }
        }
    }
}
