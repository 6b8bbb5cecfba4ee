//! A three-node cluster on loopback, each node a process with its own
//! larch file, and the scenario the example and the cluster test run on
//! it: writes, the leader killed, an election, more writes, the old leader
//! back, and every node checked against every acknowledged write.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::Request;
use crate::net::{Client, NodeConfig};

type NodeId = u64;

/// The nodes' processes, killed (SIGKILL) when dropped.
struct Nodes {
    children: BTreeMap<NodeId, Child>,
}

impl Nodes {
    fn kill(&mut self, id: NodeId) {
        if let Some(mut child) = self.children.remove(&id) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        let ids: Vec<NodeId> = self.children.keys().copied().collect();
        for id in ids {
            self.kill(id);
        }
    }
}

/// What one run of the scenario measured.
#[derive(Clone, Debug)]
pub struct Figures {
    /// Keys written in each of the two rounds.
    pub keys: usize,
    /// Writes acknowledged per second through the first leader.
    pub writes_per_sec: f64,
    /// Writes acknowledged per second through the second leader, with one
    /// node down.
    pub writes_per_sec_degraded: f64,
    /// The leader killed.
    pub old_leader: NodeId,
    /// The leader elected after it.
    pub new_leader: NodeId,
    /// From the kill to a node naming a new leader.
    pub election: Duration,
    /// From the old leader's restart to all three nodes holding the same
    /// map.
    pub catch_up: Duration,
}

/// Free loopback addresses for `n` nodes.
fn free_addrs(n: u64) -> io::Result<BTreeMap<NodeId, SocketAddr>> {
    let listeners = (1..=n)
        .map(|id| Ok((id, TcpListener::bind("127.0.0.1:0")?)))
        .collect::<io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|(id, l)| Ok((*id, l.local_addr()?)))
        .collect()
}

/// Writes `keys` keys, `key-<i>` from `first` on, with `concurrency`
/// clients at once; records each acknowledged write in `acked`; returns
/// the writes per second.
async fn write_keys(
    members: &BTreeMap<NodeId, SocketAddr>,
    first: usize,
    keys: usize,
    round: u32,
    acked: &Arc<Mutex<BTreeMap<String, String>>>,
) -> Result<f64, String> {
    const CONCURRENCY: usize = 64;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(120);
    let mut tasks = Vec::new();
    for worker in 0..CONCURRENCY {
        let (members, acked) = (members.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = Client::new(&members);
            for i in (first + worker..first + keys).step_by(CONCURRENCY) {
                let (key, value) = (format!("key-{i:07}"), format!("value-{i}-round-{round}"));
                let request = Request::Set {
                    key: key.clone(),
                    value: value.clone(),
                };
                client
                    .write(request, deadline)
                    .await
                    .map_err(|e| format!("write of {key}: {e}"))?;
                acked.lock().unwrap().insert(key, value);
            }
            Ok::<(), String>(())
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    Ok(keys as f64 / start.elapsed().as_secs_f64())
}

/// Waits until a node of `ids` other than `not` says it leads.
async fn leader_among(
    client: &mut Client,
    ids: &[NodeId],
    not: Option<NodeId>,
    timeout: Duration,
) -> Result<NodeId, String> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        for &id in ids {
            if Some(id) != not
                && let Ok(status) = client.status(id).await
                && status.leader == Some(id)
            {
                return Ok(id);
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Err(format!("no leader among {ids:?} in {timeout:?}"))
}

/// Runs the scenario on three nodes whose files are in `dir`: each node is
/// the process `spawn` starts for its config. Writes `keys` keys through
/// the leader, kills the leader (SIGKILL), waits for a new one, writes
/// `keys` more, restarts the old leader, and waits until every node holds
/// exactly the acknowledged writes. Any write refused, any node that
/// differs after a minute, is an error.
pub async fn scenario(
    dir: &Path,
    keys: usize,
    spawn: impl Fn(&NodeConfig) -> io::Result<Child>,
) -> Result<Figures, String> {
    let members = free_addrs(3).map_err(|e| e.to_string())?;
    let config = |id: NodeId| NodeConfig {
        id,
        path: dir.join(format!("node-{id}.larch")),
        members: members.clone(),
    };
    let mut nodes = Nodes {
        children: BTreeMap::new(),
    };
    for &id in members.keys() {
        let child = spawn(&config(id)).map_err(|e| format!("starting node {id}: {e}"))?;
        nodes.children.insert(id, child);
    }
    let ids: Vec<NodeId> = members.keys().copied().collect();
    let mut client = Client::new(&members);
    leader_among(&mut client, &ids, None, Duration::from_secs(30)).await?;

    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    let writes_per_sec = write_keys(&members, 0, keys, 1, &acked).await?;

    // The leader now (an election under load may have replaced the first).
    let old_leader = leader_among(&mut client, &ids, None, Duration::from_secs(30)).await?;
    nodes.kill(old_leader);
    let killed = Instant::now();
    let rest: Vec<NodeId> = ids.iter().copied().filter(|&id| id != old_leader).collect();
    let new_leader = leader_among(
        &mut client,
        &rest,
        Some(old_leader),
        Duration::from_secs(30),
    )
    .await?;
    let election = killed.elapsed();

    let writes_per_sec_degraded = write_keys(&members, keys, keys, 2, &acked).await?;

    let child = spawn(&config(old_leader)).map_err(|e| format!("restarting: {e}"))?;
    nodes.children.insert(old_leader, child);
    let restarted = Instant::now();
    let expected: Vec<(String, String)> = acked.lock().unwrap().clone().into_iter().collect();
    if expected.len() != 2 * keys {
        return Err(format!(
            "{} writes acknowledged of {}",
            expected.len(),
            2 * keys
        ));
    }
    let deadline = restarted + Duration::from_secs(60);
    let mut pending: Vec<NodeId> = ids.clone();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for id in pending {
            match client.dump(id).await {
                Ok(dump) if dump.pairs == expected => {}
                Ok(dump) if Instant::now() >= deadline => {
                    let have: BTreeSet<&(String, String)> = dump.pairs.iter().collect();
                    let missing = expected.iter().filter(|p| !have.contains(p)).count();
                    return Err(format!(
                        "node {id} holds {} keys ({missing} acknowledged writes missing) \
                         at applied index {:?} a minute after the restart",
                        dump.pairs.len(),
                        dump.applied
                    ));
                }
                Err(e) if Instant::now() >= deadline => {
                    return Err(format!("node {id} does not answer: {e}"));
                }
                _ => still.push(id),
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let catch_up = restarted.elapsed();
    Ok(Figures {
        keys,
        writes_per_sec,
        writes_per_sec_degraded,
        old_leader,
        new_leader,
        election,
        catch_up,
    })
}
