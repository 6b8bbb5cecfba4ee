//! A replicated key-value store: three larch-raft nodes on loopback, each
//! a process with its own larch file.
//!
//! `cargo run --release -p larch-raft --example kv_cluster` starts three
//! nodes, writes 10,000 keys through the leader, kills the leader, waits
//! for a new one, writes 10,000 more, restarts the old leader, checks that
//! every node holds every acknowledged write, and prints what it measured
//! (`-- --keys N` for another count).
//!
//! `kv_cluster node <id> <database path> <id>=<addr>...` runs one node
//! alone, for a cluster of your own.

use std::process::{Command, Stdio};

use larch_raft::cluster;
use larch_raft::net::{self, NodeConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Runtime::new()?;
    if args.first().map(String::as_str) == Some("node") {
        let config = NodeConfig::from_args(&args[1..])?;
        return runtime.block_on(net::run_node(config));
    }
    let keys = match args.as_slice() {
        [] => 10_000,
        [flag, n] if flag == "--keys" => n.parse()?,
        _ => return Err("usage: kv_cluster [--keys N] | node <id> <path> <id>=<addr>...".into()),
    };
    let dir = tempfile::tempdir()?;
    let exe = std::env::current_exe()?;
    let spawn = |config: &NodeConfig| {
        Command::new(&exe)
            .arg("node")
            .args(config.to_args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
    };
    let f = runtime.block_on(cluster::scenario(dir.path(), keys, spawn))?;
    println!(
        "3 nodes, {} keys then {} more: {:.0} writes/s through node {}; \
         node {} killed, node {} elected in {} ms; {:.0} writes/s with two nodes; \
         node {} back and all three equal in {} ms",
        f.keys,
        f.keys,
        f.writes_per_sec,
        f.old_leader,
        f.old_leader,
        f.new_leader,
        f.election.as_millis(),
        f.writes_per_sec_degraded,
        f.old_leader,
        f.catch_up.as_millis(),
    );
    Ok(())
}
