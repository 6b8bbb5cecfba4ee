//! The replicated key-value store survives losing its leader: three nodes,
//! each a process of this test binary with its own larch file.

use std::process::{Command, Stdio};

use larch_raft::cluster;
use larch_raft::net::{self, NodeConfig};

/// The environment variable that makes this binary a node: the node's
/// config words, one per line.
const NODE_ENV: &str = "LARCH_RAFT_TEST_NODE";

/// Not a test: the body of a node process (returns at once in a normal
/// run).
#[test]
fn cluster_node() {
    let Ok(words) = std::env::var(NODE_ENV) else {
        return;
    };
    let args: Vec<String> = words.lines().map(String::from).collect();
    let config = NodeConfig::from_args(&args).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(net::run_node(config)).unwrap();
}

/// 10,000 keys, the leader SIGKILLed, a new leader, 10,000 more, the old
/// leader restarted: every node ends with exactly the 20,000 acknowledged
/// writes.
#[test]
fn three_nodes_converge_after_losing_their_leader() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let spawn = |config: &NodeConfig| {
        Command::new(&exe)
            .args(["--exact", "cluster_node", "--nocapture", "--test-threads=1"])
            .env(NODE_ENV, config.to_args().join("\n"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let f = runtime
        .block_on(cluster::scenario(dir.path(), 10_000, spawn))
        .unwrap();
    larch::testing::report(&format!(
        "RELIABILITY suite=cluster nodes=3 keys={} writes_per_sec={:.0} \
         degraded_writes_per_sec={:.0} election_ms={} catch_up_ms={} lost_acked=0",
        2 * f.keys,
        f.writes_per_sec,
        f.writes_per_sec_degraded,
        f.election.as_millis(),
        f.catch_up.as_millis()
    ));
}
