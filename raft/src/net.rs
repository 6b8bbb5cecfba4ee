//! A small TCP transport over loopback or a LAN, enough to run a cluster of
//! larch-raft nodes: openraft's RPCs between nodes, and a client that
//! writes through the leader and reads from any node.
//!
//! Every message is a frame: its length (`u32`, big-endian, at most
//! [`MAX_FRAME`]) and a JSON body. A connection carries one request at a
//! time and its reply; a sender reconnects after any error.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use larch::Database;
use openraft::error::{
    ClientWriteError, InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError,
    RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, ClientWriteResponse, InstallSnapshotRequest,
    InstallSnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Config, Raft, SnapshotPolicy};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::{Request, StateMachine, TypeConfig};

/// The size above which an append of more than one entry is sent as
/// several: a batch of large entries would take longer than openraft waits
/// for a reply (a heartbeat interval), and be sent again for ever.
pub const APPEND_BUDGET: usize = 2 << 20;

/// The largest write frame a node takes from a client: smaller than a frame
/// by room for what an append adds around the change (log id, vote, commit
/// index), so that every entry accepted can be sent to a follower. (The
/// frame is measured as it arrives: nothing is encoded again.)
pub const MAX_WRITE: usize = MAX_FRAME - (1 << 20);

/// The largest frame a node or client accepts (a snapshot chunk, a batch of
/// entries): a length past it closes the connection.
pub const MAX_FRAME: usize = 64 << 20;

type NodeId = u64;

/// What a connection asks a node.
#[derive(Debug, Serialize, Deserialize)]
pub enum Rpc {
    /// openraft's log replication.
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    /// openraft's election.
    Vote(VoteRequest<NodeId>),
    /// openraft's snapshot transfer, a chunk at a time.
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A client's change, for the leader to replicate.
    Write(Request),
    /// A client's read of one key, from this node's state machine.
    Read(String),
    /// The whole map and its last applied log id, from this node.
    Dump,
    /// This node's view of the cluster.
    Status,
}

/// A node's view of the cluster.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    /// The node's id.
    pub id: NodeId,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// Its term.
    pub term: u64,
    /// The index of the last entry it applied.
    pub last_applied: Option<u64>,
}

/// A node's whole map, in key order, and the index of the last entry it
/// applied.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Dump {
    /// The index of the last entry applied.
    pub applied: Option<u64>,
    /// The map.
    pub pairs: Vec<(String, String)>,
}

type RaftResult<T, E = openraft::error::Infallible> = Result<T, RaftError<NodeId, E>>;

/// A node's answer to an [`Rpc`], of the same name.
#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    /// To [`Rpc::AppendEntries`].
    AppendEntries(RaftResult<AppendEntriesResponse<NodeId>>),
    /// To [`Rpc::Vote`].
    Vote(RaftResult<VoteResponse<NodeId>>),
    /// To [`Rpc::InstallSnapshot`].
    InstallSnapshot(RaftResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError>),
    /// To [`Rpc::Write`]: where the leader is, if this node is not.
    Write(RaftResult<ClientWriteResponse<TypeConfig>, ClientWriteError<NodeId, BasicNode>>),
    /// To [`Rpc::Read`].
    Read(Result<Option<String>, String>),
    /// To [`Rpc::Dump`].
    Dump(Result<Dump, String>),
    /// To [`Rpc::Status`].
    Status(Status),
    /// A request the node will not take: a write too large to replicate.
    Refused(String),
}

/// `value` as a frame's body.
fn to_body<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    let body = serde_json::to_vec(value).map_err(io::Error::other)?;
    if body.len() > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "frame too large",
        ));
    }
    Ok(body)
}

/// Writes `body` as one frame.
async fn write_frame(stream: &mut TcpStream, body: &[u8]) -> io::Result<()> {
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(body);
    stream.write_all(&frame).await
}

/// Reads one frame as a `T`, with its body's length; `None` at a clean end
/// of the connection. The body is read as it arrives: a length alone
/// reserves no memory.
async fn read_frame<T: DeserializeOwned>(stream: &mut TcpStream) -> io::Result<Option<(T, usize)>> {
    let mut len = [0u8; 4];
    match stream.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    let mut body = Vec::new();
    (&mut *stream)
        .take(len as u64)
        .read_to_end(&mut body)
        .await?;
    if body.len() != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "frame cut short",
        ));
    }
    serde_json::from_slice(&body)
        .map(|value| Some((value, len)))
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// A reply that does not answer the request sent.
fn other_kind() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "reply of another kind")
}

/// One connection to a node, opened on first use and again after an error.
struct Connection {
    addr: SocketAddr,
    stream: Option<TcpStream>,
}

impl Connection {
    fn new(addr: SocketAddr) -> Self {
        Connection { addr, stream: None }
    }

    /// Sends `rpc` and waits for its reply, at most `ttl`.
    async fn call(&mut self, rpc: &Rpc, ttl: Duration) -> io::Result<Reply> {
        self.call_body(&to_body(rpc)?, ttl).await
    }

    /// Sends a frame of `body` (an [`Rpc`]) and waits for its reply, at
    /// most `ttl`.
    async fn call_body(&mut self, body: &[u8], ttl: Duration) -> io::Result<Reply> {
        let result = tokio::time::timeout(ttl, async {
            if self.stream.is_none() {
                let stream = TcpStream::connect(self.addr).await?;
                stream.set_nodelay(true)?;
                self.stream = Some(stream);
            }
            let stream = self.stream.as_mut().expect("connected above");
            write_frame(stream, body).await?;
            read_frame(stream)
                .await?
                .map(|(reply, _)| reply)
                .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"))
        })
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "no reply in time")));
        if result.is_err() {
            // The stream may hold half a frame: never reuse it.
            self.stream = None;
        }
        result
    }
}

/// How many of `entries` (at least one) fit [`APPEND_BUDGET`] when they do
/// not all fit; `None` when they do, or there is only one. Entries are
/// measured one by one up to the budget, so a batch far past the frame
/// limit costs no more than the budget to measure, and is split rather
/// than refused by `to_body` (and sent again for ever).
fn entries_within_budget(entries: &[openraft::Entry<TypeConfig>]) -> Option<usize> {
    /// Counts the bytes written to it.
    struct Count(usize);
    impl io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    if entries.len() < 2 {
        return None;
    }
    let mut size = Count(0);
    for (n, entry) in entries.iter().enumerate() {
        // An entry that cannot be encoded is counted as past the budget.
        if serde_json::to_writer(&mut size, entry).is_err() || size.0 > APPEND_BUDGET {
            return Some(n.max(1));
        }
    }
    None
}

/// openraft's network: a connection to each peer, by its address.
pub struct Network;

/// The connection of one node to one peer.
pub struct PeerConnection {
    target: NodeId,
    conn: Connection,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerConnection {
        // An address that does not parse is unreachable, at every call.
        let addr = node
            .addr
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        PeerConnection {
            target,
            conn: Connection::new(addr),
        }
    }
}

impl PeerConnection {
    /// Sends `rpc` to the peer and takes its reply apart with `unpack`.
    async fn send<T, E: std::error::Error>(
        &mut self,
        rpc: Rpc,
        option: RPCOption,
        unpack: impl FnOnce(Reply) -> Option<RaftResult<T, E>>,
    ) -> Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>> {
        if let Rpc::AppendEntries(req) = &rpc
            && let Some(fit) = entries_within_budget(&req.entries)
        {
            // openraft sends again with as many entries as the hint says.
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(fit as u64),
            ));
        }
        let body = to_body(&rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let reply = match self.conn.call_body(&body, option.hard_ttl()).await {
            Ok(reply) => reply,
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                return Err(RPCError::Unreachable(Unreachable::new(&e)));
            }
            Err(e) => return Err(RPCError::Network(NetworkError::new(&e))),
        };
        match unpack(reply) {
            Some(Ok(resp)) => Ok(resp),
            Some(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            None => Err(RPCError::Network(NetworkError::new(&other_kind()))),
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.send(Rpc::AppendEntries(rpc), option, |r| match r {
            Reply::AppendEntries(r) => Some(r),
            _ => None,
        })
        .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.send(Rpc::InstallSnapshot(rpc), option, |r| match r {
            Reply::InstallSnapshot(r) => Some(r),
            _ => None,
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.send(Rpc::Vote(rpc), option, |r| match r {
            Reply::Vote(r) => Some(r),
            _ => None,
        })
        .await
    }
}

/// Where a node keeps its database and who its peers are.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The node's id.
    pub id: NodeId,
    /// Its database file.
    pub path: PathBuf,
    /// Every node's address, its own included. The node with the least id
    /// initializes the cluster with all of them on its first start.
    pub members: BTreeMap<NodeId, SocketAddr>,
}

impl NodeConfig {
    /// The config as command-line words: `<id> <path> <id>=<addr>...`.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![self.id.to_string(), self.path.display().to_string()];
        args.extend(self.members.iter().map(|(id, addr)| format!("{id}={addr}")));
        args
    }

    /// The config from the words [`to_args`](NodeConfig::to_args) gives.
    pub fn from_args(args: &[String]) -> Result<NodeConfig, String> {
        let usage = || "usage: <id> <database path> <id>=<addr>...".to_string();
        let [id, path, members @ ..] = args else {
            return Err(usage());
        };
        let id = id.parse().map_err(|_| usage())?;
        let members = members
            .iter()
            .map(|m| {
                let (id, addr) = m.split_once('=').ok_or_else(usage)?;
                Ok((
                    id.parse().map_err(|_| usage())?,
                    addr.parse().map_err(|_| usage())?,
                ))
            })
            .collect::<Result<BTreeMap<_, _>, String>>()?;
        if !members.contains_key(&id) {
            return Err(format!("node {id} is not among the members"));
        }
        Ok(NodeConfig {
            id,
            path: path.into(),
            members,
        })
    }
}

/// The Raft timing of the nodes: heartbeats every 100 ms (openraft also
/// waits that long for a reply to an append), elections after 300 to 600
/// ms of silence, a snapshot every 5,000 applied entries.
pub fn raft_config() -> Config {
    Config {
        cluster_name: "larch-raft".into(),
        heartbeat_interval: 100,
        election_timeout_min: 300,
        election_timeout_max: 600,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(5_000),
        max_in_snapshot_log_to_keep: 1_000,
        ..Config::default()
    }
}

/// Runs a node until the process ends: opens its database, starts Raft,
/// initializes the cluster if it is the first member and new, and serves
/// peers and clients on its address.
pub async fn run_node(config: NodeConfig) -> Result<(), Box<dyn std::error::Error>> {
    let addr = config.members[&config.id];
    let listener = TcpListener::bind(addr).await?;
    // SAFETY: the node's database file is written by this process alone,
    // through larch, while it is open.
    let db = unsafe { Database::open(&config.path) }?;
    let (log, sm) = crate::stores(db);
    let raft = Raft::new(
        config.id,
        Arc::new(raft_config().validate()?),
        Network,
        log,
        sm.clone(),
    )
    .await?;
    if config.members.keys().next() == Some(&config.id) {
        let members: BTreeMap<NodeId, BasicNode> = config
            .members
            .iter()
            .map(|(&id, addr)| (id, BasicNode::new(addr)))
            .collect();
        // A node that was initialized before refuses; that is its restart.
        let _ = raft.initialize(members).await;
    }
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            // Out of file descriptors, or a connection reset before it was
            // taken: the node goes on, and tries again shortly.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Past the limit, a new connection is closed at once.
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            continue;
        };
        let (raft, sm) = (raft.clone(), sm.clone());
        tokio::spawn(async move {
            // A peer or client that goes away, or misbehaves, ends its
            // connection only.
            let _ = serve(stream, raft, sm).await;
            drop(permit);
        });
    }
}

/// The connections a node serves at once.
pub const MAX_CONNECTIONS: usize = 256;

/// How long a connection may stay silent between requests, and take to
/// send one, before the node closes it.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The greatest term or log index a node accepts from the network: far past
/// any real cluster's, and far enough below `u64::MAX` that openraft's
/// arithmetic on them cannot overflow.
const MAX_TERM_OR_INDEX: u64 = 1 << 62;

/// Whether every term and index `rpc` carries is below
/// [`MAX_TERM_OR_INDEX`].
fn sane(rpc: &Rpc) -> bool {
    let vote = |v: &openraft::Vote<NodeId>| v.leader_id().term < MAX_TERM_OR_INDEX;
    let id = |id: Option<&openraft::LogId<NodeId>>| {
        id.is_none_or(|id| id.leader_id.term < MAX_TERM_OR_INDEX && id.index < MAX_TERM_OR_INDEX)
    };
    match rpc {
        Rpc::AppendEntries(req) => {
            vote(&req.vote)
                && id(req.prev_log_id.as_ref())
                && id(req.leader_commit.as_ref())
                && req.entries.iter().all(|e| id(Some(&e.log_id)))
        }
        Rpc::Vote(req) => vote(&req.vote) && id(req.last_log_id.as_ref()),
        Rpc::InstallSnapshot(req) => {
            vote(&req.vote)
                && id(req.meta.last_log_id.as_ref())
                && id(req.meta.last_membership.log_id().as_ref())
        }
        Rpc::Write(_) | Rpc::Read(_) | Rpc::Dump | Rpc::Status => true,
    }
}

/// Answers the requests of one connection, one at a time.
async fn serve(mut stream: TcpStream, raft: Raft<TypeConfig>, sm: StateMachine) -> io::Result<()> {
    stream.set_nodelay(true)?;
    loop {
        let (rpc, len) =
            match tokio::time::timeout(IDLE_TIMEOUT, read_frame::<Rpc>(&mut stream)).await {
                Ok(Ok(Some(frame))) => frame,
                Ok(Ok(None)) => return Ok(()),
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "idle connection")),
            };
        if !sane(&rpc) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "term or index out of range",
            ));
        }
        let reply = match rpc {
            Rpc::AppendEntries(req) => Reply::AppendEntries(raft.append_entries(req).await),
            Rpc::Vote(req) => Reply::Vote(raft.vote(req).await),
            Rpc::InstallSnapshot(req) => Reply::InstallSnapshot(raft.install_snapshot(req).await),
            Rpc::Write(req) if len <= MAX_WRITE => Reply::Write(raft.client_write(req).await),
            Rpc::Write(_) => Reply::Refused(format!("a write frame over {MAX_WRITE} bytes")),
            Rpc::Read(key) => Reply::Read(sm.get(&key).map_err(|e| e.to_string())),
            Rpc::Dump => Reply::Dump(
                sm.dump()
                    .map(|(applied, pairs)| Dump {
                        applied: applied.map(|id| id.index),
                        pairs,
                    })
                    .map_err(|e| e.to_string()),
            ),
            Rpc::Status => {
                let m = raft.metrics().borrow().clone();
                Reply::Status(Status {
                    id: m.id,
                    leader: m.current_leader,
                    term: m.current_term,
                    last_applied: m.last_applied.map(|id| id.index),
                })
            }
        };
        write_frame(&mut stream, &to_body(&reply)?).await?;
    }
}

/// A client of a cluster: writes go to the leader (found by asking, and
/// followed when a node names another), reads to the node asked.
pub struct Client {
    conns: BTreeMap<NodeId, Connection>,
    leader: Option<NodeId>,
}

/// How long a client call waits for one node's reply.
const CALL_TTL: Duration = Duration::from_secs(5);

impl Client {
    /// A client of the nodes at `members`.
    pub fn new(members: &BTreeMap<NodeId, SocketAddr>) -> Client {
        Client {
            conns: members
                .iter()
                .map(|(&id, &addr)| (id, Connection::new(addr)))
                .collect(),
            leader: None,
        }
    }

    /// Sends `rpc` to node `id`.
    async fn call(&mut self, id: NodeId, rpc: &Rpc) -> io::Result<Reply> {
        let conn = self
            .conns
            .get_mut(&id)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no node {id}")))?;
        conn.call(rpc, CALL_TTL).await
    }

    /// Replicates `request` through the leader and returns once it is
    /// committed and applied there; retries through elections and lost
    /// connections until `deadline`. A change retried after a lost reply
    /// may be applied twice (a `Set` or `Delete` again changes nothing).
    pub async fn write(&mut self, request: Request, deadline: Instant) -> io::Result<()> {
        let rpc = Rpc::Write(request);
        let ids: Vec<NodeId> = self.conns.keys().copied().collect();
        let mut next = 0;
        loop {
            let target = self.leader.unwrap_or(ids[next % ids.len()]);
            match self.call(target, &rpc).await {
                Ok(Reply::Write(Ok(_))) => {
                    self.leader = Some(target);
                    return Ok(());
                }
                Ok(Reply::Write(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(
                    f,
                )))))
                    if f.leader_id.is_some_and(|l| l != target) =>
                {
                    self.leader = f.leader_id;
                    continue;
                }
                Ok(Reply::Write(Err(RaftError::APIError(
                    ClientWriteError::ChangeMembershipError(e),
                )))) => {
                    return Err(io::Error::other(e.to_string()));
                }
                Ok(Reply::Refused(why)) => {
                    return Err(io::Error::new(io::ErrorKind::InvalidInput, why));
                }
                // No leader known yet (or the node asked names itself but
                // no longer leads), a dying leader, or a node gone: ask
                // again, another node first.
                _ => {
                    self.leader = None;
                    next += 1;
                }
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no leader took the write",
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The value of `key` as node `id` applied it.
    pub async fn read(&mut self, id: NodeId, key: &str) -> io::Result<Option<String>> {
        match self.call(id, &Rpc::Read(key.into())).await? {
            Reply::Read(r) => r.map_err(io::Error::other),
            _ => Err(other_kind()),
        }
    }

    /// Node `id`'s whole map and the index of its last applied entry.
    pub async fn dump(&mut self, id: NodeId) -> io::Result<Dump> {
        match self.call(id, &Rpc::Dump).await? {
            Reply::Dump(r) => r.map_err(io::Error::other),
            _ => Err(other_kind()),
        }
    }

    /// Node `id`'s view of the cluster.
    pub async fn status(&mut self, id: NodeId) -> io::Result<Status> {
        match self.call(id, &Rpc::Status).await? {
            Reply::Status(s) => Ok(s),
            _ => Err(other_kind()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload, LogId};

    fn entries(n: u64, value_len: usize) -> Vec<openraft::Entry<TypeConfig>> {
        (1..=n)
            .map(|i| openraft::Entry {
                log_id: LogId::new(CommittedLeaderId::new(1, 1), i),
                payload: EntryPayload::Normal(Request::Set {
                    key: format!("k{i}"),
                    value: "x".repeat(value_len),
                }),
            })
            .collect()
    }

    /// A batch past the frame limit is split like any batch past the
    /// budget: it was refused by `to_body` as a network error instead, and
    /// openraft sent it again for ever (a follower catching up on large
    /// entries never did).
    #[test]
    fn batches_past_the_budget_or_the_frame_are_split() {
        assert_eq!(entries_within_budget(&entries(1, 3 << 20)), None);
        assert_eq!(entries_within_budget(&entries(50, 1 << 10)), None);
        let big = entries(100, 700 << 10);
        assert!(to_body(&big).is_err(), "past the frame limit");
        assert_eq!(entries_within_budget(&big), Some(2));
        let fit = entries_within_budget(&entries(100, 100 << 10)).unwrap();
        assert!(to_body(&entries(fit as u64, 100 << 10)).unwrap().len() <= APPEND_BUDGET);
        assert!(to_body(&entries(fit as u64 + 1, 100 << 10)).unwrap().len() > APPEND_BUDGET);
    }
}
