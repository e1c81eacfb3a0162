//! The harness of several cores wired together in memory (see the parent module's header):
//! a [`Mesh`] of [`MeshNode`]s, the [`Pipe`]s between them, and a virtual clock.

use super::*;

pub(super) struct MeshNode {
    pub(super) node: Node,
    pub(super) config: TcpConfig,
    /// False: connections to this node fail.
    pub(super) reachable: bool,
}

impl std::ops::Deref for MeshNode {
    type Target = Node;
    fn deref(&self) -> &Node {
        &self.node
    }
}

impl std::ops::DerefMut for MeshNode {
    fn deref_mut(&mut self) -> &mut Node {
        &mut self.node
    }
}

/// One TCP connection between two nodes.
pub(super) struct Pipe {
    pub(super) opener: (usize, ConnId),
    pub(super) acceptor: (usize, ConnId),
    /// Bytes from the opener are not delivered (the acceptor does not read).
    pub(super) hold_to_acceptor: bool,
    /// Bytes from the acceptor are not delivered (the opener does not read).
    pub(super) hold_to_opener: bool,
}

pub(super) struct Mesh {
    pub(super) nodes: Vec<MeshNode>,
    pub(super) pipes: Vec<Pipe>,
    next_conn: ConnId,
    pub(super) now: u64,
    /// (time, opener, peer index, connected)
    pub(super) connects: Vec<(u64, usize, usize, bool)>,
    /// New pipes hold the acceptor's answers (to cut a link before its catch-up).
    pub(super) hold_new_answers: bool,
}

pub(super) fn node_addr(i: usize) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1 + i as u8)), 4747)
}

impl Mesh {
    /// `n` nodes; node `a` has `--peer` node `b` for each `(a, b)` in `links`.
    pub(super) fn new(n: usize, links: &[(usize, usize)]) -> Mesh {
        let nodes = (0..n)
            .map(|i| {
                let config = TcpConfig {
                    identity: TcpIdentity {
                        name: format!("node{i}"),
                        ..TcpIdentity::default()
                    },
                    peering: Peering {
                        peers: links
                            .iter()
                            .filter(|l| l.0 == i)
                            .map(|l| node_addr(l.1))
                            .collect(),
                        // The operator of the accepting side lets its peers in.
                        allow_peers: links
                            .iter()
                            .filter(|l| l.1 == i)
                            .map(|l| Cidr::parse(&node_addr(l.0).ip().to_string()).unwrap())
                            .collect(),
                        ..Peering::default()
                    },
                    ..open()
                };
                MeshNode {
                    node: Node::new(config.clone(), 0),
                    config,
                    reachable: true,
                }
            })
            .collect();
        Mesh {
            nodes,
            pipes: Vec::new(),
            next_conn: 1000,
            now: 0,
            connects: Vec::new(),
            hold_new_answers: false,
        }
    }

    /// Replaces node `i` (before anything ran) with one at `clock` and a changed config.
    pub(super) fn set_node(&mut self, i: usize, clock: u32, f: impl FnOnce(&mut TcpConfig)) {
        let mut cfg = self.nodes[i].config.clone();
        f(&mut cfg);
        self.nodes[i].config = cfg.clone();
        self.nodes[i].node = Node::new(cfg, clock);
    }

    pub(super) fn conn_id(&mut self) -> ConnId {
        self.next_conn += 1;
        self.next_conn
    }

    pub(super) fn close_pipe(&mut self, at: (usize, ConnId)) {
        let Some(p) = self
            .pipes
            .iter()
            .position(|p| p.opener == at || p.acceptor == at)
        else {
            return;
        };
        let p = self.pipes.remove(p);
        let now = self.now;
        for (i, c) in [p.opener, p.acceptor] {
            self.nodes[i].core.handle_closed(now, c);
        }
    }

    /// One round of actions and bytes; false when nothing happened.
    fn step(&mut self) -> bool {
        let mut moved = false;
        let now = self.now;
        for i in 0..self.nodes.len() {
            for action in self.nodes[i].actions() {
                moved = true;
                match action {
                    TcpAction::DirectoryDigest { tag } => {
                        self.nodes[i]
                            .core
                            .handle_directory_digest(now, tag, 0, &[0; 64]);
                    }
                    // No UDP plane here: an empty directory, records go nowhere.
                    TcpAction::DirectoryPage { tag, .. } => {
                        self.nodes[i]
                            .core
                            .handle_directory_page(tag, &[], 0, None, false);
                    }
                    TcpAction::DirectoryIds { tag } => {
                        self.nodes[i].core.handle_directory_ids(now, tag, &[]);
                    }
                    TcpAction::PeerRecord { .. }
                    | TcpAction::Forward { .. }
                    | TcpAction::VerifyClient { .. } => {}
                    TcpAction::Connect { peer, addr, .. } => {
                        let j = (0..self.nodes.len())
                            .find(|&j| node_addr(j) == addr)
                            .expect("a node at that address");
                        if self.nodes[j].reachable {
                            let (co, ca) = (self.conn_id(), self.conn_id());
                            self.nodes[i].core.handle_connected(now, peer, co);
                            let from = SocketAddr::new(node_addr(i).ip(), 40_000 + co as u16);
                            self.nodes[j].core.handle_accept(now, ca, from);
                            self.pipes.push(Pipe {
                                opener: (i, co),
                                acceptor: (j, ca),
                                hold_to_acceptor: false,
                                hold_to_opener: self.hold_new_answers,
                            });
                            self.connects.push((now, i, peer, true));
                        } else {
                            self.nodes[i].core.handle_connect_failed(now, peer);
                            self.connects.push((now, i, peer, false));
                        }
                    }
                    TcpAction::Close(c) => {
                        if self
                            .pipes
                            .iter()
                            .any(|p| p.opener == (i, c) || p.acceptor == (i, c))
                        {
                            self.close_pipe((i, c));
                        } else {
                            self.nodes[i].core.handle_closed(now, c);
                        }
                    }
                }
            }
        }
        for n in &mut self.nodes {
            n.settle();
        }
        for k in 0..self.pipes.len() {
            let p = &self.pipes[k];
            let dirs = [
                (p.opener, p.acceptor, p.hold_to_acceptor),
                (p.acceptor, p.opener, p.hold_to_opener),
            ];
            for ((si, sc), (di, dc), hold) in dirs {
                if hold {
                    continue;
                }
                let bytes = self.nodes[si].core.output(sc).to_vec();
                if bytes.is_empty() {
                    continue;
                }
                moved = true;
                self.nodes[si].core.consumed(now, sc, bytes.len());
                self.nodes[di].core.handle_data(now, dc, &bytes);
            }
        }
        for n in &mut self.nodes {
            n.settle();
        }
        moved
    }

    pub(super) fn run(&mut self) {
        for _ in 0..100_000 {
            if !self.step() {
                return;
            }
        }
        panic!("the mesh never settles");
    }

    pub(super) fn advance_to(&mut self, t: u64) {
        self.now = t;
        for n in &mut self.nodes {
            n.advance_to(t);
        }
        self.run();
    }

    /// Runs every deadline up to `t`, then `t`.
    pub(super) fn run_until(&mut self, t: u64) {
        self.advance_to(self.now);
        for _ in 0..100_000 {
            let next = self
                .nodes
                .iter()
                .filter_map(|n| n.core.poll_timeout())
                .min();
            match next {
                Some(d) if d <= t => self.advance_to(d.max(self.now)),
                _ => break,
            }
            if self.now == t {
                break;
            }
        }
        self.advance_to(t);
    }

    /// Cuts every connection (both ends see it closed).
    pub(super) fn cut_all(&mut self) {
        while let Some(p) = self.pipes.first() {
            let at = p.opener;
            self.close_pipe(at);
        }
    }

    /// The pipe that node `a` opened to node `b`.
    pub(super) fn link(&mut self, a: usize, b: usize) -> &mut Pipe {
        self.pipes
            .iter_mut()
            .find(|p| p.opener.0 == a && p.acceptor.0 == b)
            .expect("link up")
    }

    /// A client connection on node `i`, hello done.
    pub(super) fn client(&mut self, i: usize) -> ConnId {
        let c = self.conn_id();
        self.nodes[i].now = self.now;
        self.nodes[i].client(c);
        c
    }

    pub(super) fn write(&mut self, i: usize, conn: ConnId, user: &str, contact: &str, phone: &str) {
        self.nodes[i].send(conn, &client_update(user, contact, phone));
    }
}
