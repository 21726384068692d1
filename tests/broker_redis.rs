//! Broadcast and topics across two ringsocket processes (2 workers each) through
//! Redis pub/sub (a real `redis-server`) on a loopback port of its own: fan-out to both
//! cores of the other node exactly once and in order, unsubscribe on the last member,
//! cluster-wide counts, and a broker killed and restarted mid-run.
//! The scenarios are in `cluster/mod.rs`, shared with the other broker.

mod common;

#[allow(dead_code)]
#[path = "../examples/cluster_chat.rs"]
mod cluster_chat;

mod cluster;

use cluster::Kind;

#[test]
fn a_publish_reaches_both_cores_of_the_other_node_once_in_order_until_it_unsubscribes() {
    cluster::fan_out_order_and_unsubscribe(Kind::Redis);
}

#[test]
fn a_broker_restart_is_survived_and_what_was_published_meanwhile_is_counted_failed() {
    cluster::broker_restart(Kind::Redis);
}

/// Not a test: the node processes the tests above start (this binary again, with
/// `RINGSOCKET_TEST_NODE` set). Without it, it returns at once.
#[test]
#[ignore = "a cluster node, started by the other tests of this file"]
fn node_process() {
    cluster::run_node_if_asked();
}
