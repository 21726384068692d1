//! The bad-input and fault battery: one test per row (or per input of a row) of the robustness
//! catalogue (`shared/research/robustness-catalogue.md`, groups H, F, U, C, X, R, T, P, S, B),
//! each named after its catalogue ID. Every case sends the exact bytes or causes the exact
//! fault, asserts the exact answer (HTTP status, close code, typed error), keeps a control
//! connection on the same core round-tripping throughout, and ends with the server's
//! descriptors, registry and memory back where they were ([`harness::Case::finish`]).
//!
//! Cases run one at a time (they count the whole process's descriptors). Group X
//! (permessage-deflate, with P10's malicious deflate streams) is `x_deflate.rs`; its client
//! compresses with `tests/deflate_support`, shared with `tests/deflate.rs`. `soak.rs` is the
//! minutes-long run behind `scripts/soak.sh`, ignored by `cargo test`.

#[path = "../deflate_support/mod.rs"]
mod deflate_support;
mod harness;

mod b_broadcast;
mod c_close;
mod f_framing;
mod h_handshake;
pub(crate) mod p_process;
mod r_limits;
mod s_shutdown;
mod soak;
mod t_timeouts;
mod u_utf8;
mod x_deflate;
