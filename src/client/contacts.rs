//! A blocking client of the TCP plane's client role (docs/PROTOCOL.md §8.3): hello, the
//! proof of the client's certificate key (§8.18), Update, ListAll, Status and the Barrier,
//! which answers once every earlier write is durable. Answers are read with the wire's one answer codec
//! ([`crate::wire::tcp::answer::AnswerReader`]), piece by piece: a ListAll of any length
//! is read without holding it.

use crate::identity::Identity;
use crate::wire::tcp::answer::{AnswerPiece, AnswerReader, Asked, Outcome, Piece};
use crate::wire::tcp::auth::{client_signed_message, ClientProof};
use crate::wire::tcp::{self, ClientCommand, ContactFields, Hello, Role};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One contact as listed: `(username, contact, phone)`.
pub type Listed = (String, String, String);

/// What a Status request got (docs/PROTOCOL.md §8.5, §8.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusAnswer {
    /// The status text: UTF-8 `key=value` lines, `\n`-terminated.
    Text(String),
    /// A status frame instead, after which the server closes the connection: it refused
    /// the hello (`request` 0; 503 [`tcp::DETAIL_DRAINING`] while it drains) or the
    /// request.
    Refused {
        /// The status code (400, 403, 503, ...).
        status: u16,
        /// The command byte refused: 0 for the hello, 6 for the Status request.
        request: u8,
        /// The server's detail, UTF-8, at most 255 bytes.
        detail: String,
    },
}

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 64 * 1024;

/// The connection's bytes: the seed's raw framing, or TLS 1.3 on the same port
/// (docs/PROTOCOL.md §8.19; with the `net` feature).
enum Wire {
    Raw(TcpStream),
    #[cfg(feature = "net")]
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Wire::Raw(s) => s.read(buf),
            #[cfg(feature = "net")]
            Wire::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Wire::Raw(s) => s.write(buf),
            #[cfg(feature = "net")]
            Wire::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Wire::Raw(s) => s.flush(),
            #[cfg(feature = "net")]
            Wire::Tls(s) => s.flush(),
        }
    }
}

/// A connection in the client role.
pub struct ContactsClient {
    stream: Wire,
    /// Over TLS: the node key the server proved in its handshake; the challenge must be
    /// bound to it (docs/PROTOCOL.md §8.18).
    server_key: Option<Vec<u8>>,
    /// What was asked, and the answer being read.
    answers: AnswerReader,
    /// Bytes received and not yet read as answers start at `start`. Holds at most one
    /// piece (a record, a status frame, the status text) and one read chunk.
    inbuf: Vec<u8>,
    start: usize,
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn invalid_input(e: crate::wire::WireError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e.to_string())
}

/// The error for a piece that is not the one a request waits for.
fn unexpected(asked: &str, piece: &AnswerPiece<'_>) -> io::Error {
    match piece {
        AnswerPiece::Status(f) => bad(format!(
            "the server refused {asked}: {} {}",
            f.status, f.detail
        )),
        AnswerPiece::Malformed { kind, error } => bad(format!(
            "malformed {} in the answer to {asked}: {error}",
            kind.name()
        )),
        other => bad(format!(
            "unexpected {} in the answer to {asked}",
            other.kind().name()
        )),
    }
}

impl ContactsClient {
    /// Connects to `server` and says hello as client `name` (at most 256 bytes). `timeout`
    /// bounds the connect and every read.
    ///
    /// # Errors
    /// Connection errors; `InvalidInput` for a name that does not fit.
    pub fn connect(server: SocketAddr, name: &str, timeout: Duration) -> io::Result<Self> {
        let stream = TcpStream::connect_timeout(&server, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Self::hello(Wire::Raw(stream), None, name)
    }

    /// As [`Self::connect`], over TLS 1.3 on the same port (docs/PROTOCOL.md §8.19): the
    /// server presents its node certificate, whose key [`Self::authenticate`] then
    /// requires the challenge to be bound to (a relay by a man in the middle fails there).
    ///
    /// # Errors
    /// Connection and handshake errors (`InvalidData` for a certificate that is not a
    /// self-signed one in date); `InvalidInput` for a name that does not fit.
    #[cfg(feature = "net")]
    pub fn connect_tls(server: SocketAddr, name: &str, timeout: Duration) -> io::Result<Self> {
        let mut sock = TcpStream::connect_timeout(&server, timeout)?;
        sock.set_read_timeout(Some(timeout))?;
        sock.set_write_timeout(Some(timeout))?;
        sock.set_nodelay(true)?;
        let cfg = crate::net::tls::client_config(None).map_err(io::Error::other)?;
        let sni = rustls::pki_types::ServerName::IpAddress(server.ip().into());
        let mut conn = rustls::ClientConnection::new(cfg, sni).map_err(io::Error::other)?;
        while conn.is_handshaking() {
            conn.complete_io(&mut sock)?;
        }
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let key = crate::net::tls::peer_key(&conn, unix)
            .ok_or_else(|| bad("the server presented no usable certificate".into()))?;
        let wire = Wire::Tls(Box::new(rustls::StreamOwned::new(conn, sock)));
        Self::hello(wire, Some(key), name)
    }

    /// Sends the client-role hello as `name` on `stream`.
    fn hello(mut stream: Wire, server_key: Option<Vec<u8>>, name: &str) -> io::Result<Self> {
        let mut hello = [0u8; tcp::HELLO_LEN];
        Hello {
            role: Role::Client,
            name,
        }
        .emit(&mut hello)
        .map_err(invalid_input)?;
        stream.write_all(&hello)?;
        Ok(ContactsClient {
            stream,
            server_key,
            answers: AnswerReader::new(),
            inbuf: Vec::new(),
            start: 0,
        })
    }

    /// Connects to `server` as [`Self::connect`] does, then proves the key of `identity`
    /// ([`Self::authenticate`]): the connection then reads and writes the contacts of the
    /// username [`Self::owner`] names.
    ///
    /// # Errors
    /// Those of [`Self::connect`] and [`Self::authenticate`].
    pub fn connect_as(
        server: SocketAddr,
        identity: &Identity,
        timeout: Duration,
    ) -> io::Result<Self> {
        let mut cl = Self::connect(server, "rendezvous-client", timeout)?;
        cl.authenticate(identity)?;
        Ok(cl)
    }

    /// The username of `identity`'s own contacts: its fingerprint in lowercase hex (64
    /// characters; docs/PROTOCOL.md §8.18).
    pub fn owner(identity: &Identity) -> String {
        identity.fingerprint().to_hex()
    }

    /// Proves the key of `identity`'s certificate (docs/PROTOCOL.md §8.18): asks for a
    /// challenge (20), signs "rendezvous client auth v1" || nonce and sends the
    /// certificate and signature (21). Returns the server's node uid, the nonce's first 16
    /// bytes (all zero for a server without a node identity), for a caller that pins it.
    ///
    /// # Errors
    /// Read and write errors; `PermissionDenied` with the server's status and detail when
    /// it refuses the proof; `InvalidData` for a malformed answer; `InvalidInput` for a
    /// certificate and signature over 4096 bytes together; over TLS, `PermissionDenied`
    /// when the nonce is not bound to the node key of the server's certificate (nothing
    /// is signed then).
    pub fn authenticate(&mut self, identity: &Identity) -> io::Result<[u8; 16]> {
        self.ask(ClientCommand::AuthChallenge)?;
        let nonce = self.next_piece(|p| match p.piece {
            AnswerPiece::Nonce(n) => Ok(*n),
            piece => Err(unexpected("AuthChallenge", &piece)),
        })??;
        if let Some(key) = &self.server_key {
            if nonce[..16] != crate::core::node::node_uid(key) {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "the challenge is not bound to the TLS server's node key (a relay?); \
                     not signed",
                ));
            }
        }
        let signature = identity
            .try_sign(&client_signed_message(&nonce))
            .map_err(|e| io::Error::other(format!("cannot sign the challenge: {e}")))?;
        let proof = ClientProof {
            cert: identity.cert_der(),
            signature: &signature,
        };
        let mut body = vec![0u8; proof.encoded_len()];
        proof.emit(&mut body).map_err(invalid_input)?;
        let mut frame = Vec::with_capacity(3 + body.len());
        ClientCommand::AuthProof(&body)
            .append_to(&mut frame)
            .map_err(invalid_input)?;
        self.answers
            .ask(Asked::AuthProof, ())
            .map_err(|e| bad(e.to_string()))?;
        self.stream.write_all(&frame)?;
        self.next_piece(|p| match (p.piece, p.outcome) {
            (AnswerPiece::Status(_), Outcome::Answered(())) => Ok(()),
            (AnswerPiece::Status(f), _) => Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("the server refused the proof: {} {}", f.status, f.detail),
            )),
            (piece, _) => Err(unexpected("AuthProof", &piece)),
        })??;
        let mut uid = [0u8; 16];
        uid.copy_from_slice(&nonce[..16]);
        Ok(uid)
    }

    /// The connection itself, for a caller that goes on with its own framing (the bench),
    /// with the bytes already received but not read as answers (none after an
    /// [`Self::authenticate`], which the server follows with nothing unasked).
    ///
    /// # Errors
    /// `Unsupported` on a TLS connection (its bytes are not the socket's).
    pub fn into_parts(mut self) -> io::Result<(TcpStream, Vec<u8>)> {
        self.inbuf.drain(..self.start);
        match self.stream {
            Wire::Raw(s) => Ok((s, self.inbuf)),
            #[cfg(feature = "net")]
            Wire::Tls(_) => Err(io::ErrorKind::Unsupported.into()),
        }
    }

    /// Sends an Update (no answer comes; see [`Self::barrier`]).
    ///
    /// # Errors
    /// Write errors; `InvalidInput` for fields that do not fit (256/256/20 bytes), whose
    /// inner error ([`io::Error::get_ref`]) is the [`crate::wire::tcp::FieldError`] naming the field and its
    /// width. Nothing is sent then.
    pub fn update(&mut self, username: &str, contact: &str, phone: &str) -> io::Result<()> {
        let fields = ContactFields {
            username,
            contact,
            phone,
        };
        fields
            .check_each()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let cmd = ClientCommand::Update(fields);
        let mut buf = [0u8; tcp::CLIENT_RECORD_LEN];
        let n = cmd.emit(&mut buf).map_err(invalid_input)?;
        self.stream.write_all(&buf[..n])
    }

    /// Sends a command without a body and notes the answer it asks for.
    fn ask(&mut self, cmd: ClientCommand<'_>) -> io::Result<()> {
        let asked = cmd
            .asked()
            .ok_or_else(|| bad("no answer to wait for".into()))?;
        self.answers
            .ask(asked, ())
            .map_err(|e| bad(e.to_string()))?;
        self.stream.write_all(&[cmd.command_byte()])
    }

    /// Reads the next piece of the answer stream and hands it to `f`, reading from the
    /// socket until one is whole.
    fn next_piece<R>(&mut self, f: impl FnOnce(Piece<'_, ()>) -> R) -> io::Result<R> {
        loop {
            match self.answers.read(&self.inbuf[self.start..]) {
                Ok(Some(p)) => {
                    let len = p.len;
                    let r = f(p);
                    self.start += len;
                    return Ok(r);
                }
                Ok(None) => self.fill()?,
                Err(e) => return Err(bad(format!("unreadable answer: {e}"))),
            }
        }
    }

    /// Reads more bytes from the socket, first dropping those already read as answers.
    fn fill(&mut self) -> io::Result<()> {
        self.inbuf.drain(..self.start);
        self.start = 0;
        let have = self.inbuf.len();
        self.inbuf.resize(have + READ_CHUNK, 0);
        let n = self.stream.read(&mut self.inbuf[have..]);
        self.inbuf.truncate(have + *n.as_ref().unwrap_or(&0));
        match n {
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection before answering",
            )),
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Waits until every earlier command on this connection is durable (status 200).
    ///
    /// # Errors
    /// Read errors; `Other` with the server's status and detail when it is not 200;
    /// `InvalidData` for bytes that are no status frame.
    pub fn barrier(&mut self) -> io::Result<()> {
        self.ask(ClientCommand::Barrier)?;
        self.next_piece(|p| match (p.piece, p.outcome) {
            (AnswerPiece::Status(_), Outcome::Answered(())) => Ok(()),
            (AnswerPiece::Status(f), _) => Err(io::Error::other(format!(
                "server answered {}: {}",
                f.status, f.detail
            ))),
            (piece, _) => Err(unexpected("Barrier", &piece)),
        })?
    }

    /// Asks for the server's status: UTF-8 `key=value` lines (name, Lamport clock, contact
    /// count and SHA-512 digest, directory size and digest, one `peer=` line per peer;
    /// docs/PROTOCOL.md §8.5), at most 1 MiB.
    ///
    /// # Errors
    /// Read errors; `InvalidData` for a malformed answer (or a refusal).
    pub fn status(&mut self) -> io::Result<String> {
        match self.status_answer()? {
            StatusAnswer::Text(text) => Ok(text),
            StatusAnswer::Refused { status, detail, .. } => {
                Err(bad(format!("the server refused Status: {status} {detail}")))
            }
        }
    }

    /// As [`Self::status`], with a refusal (a status frame) as a value rather than an
    /// error, so a caller can tell a draining server (503 [`tcp::DETAIL_DRAINING`]) from
    /// one it cannot reach.
    ///
    /// # Errors
    /// Read errors (the server closed without a status frame, or did not answer in the
    /// connection's timeout); `InvalidData` for bytes that are no answer.
    pub fn status_answer(&mut self) -> io::Result<StatusAnswer> {
        self.ask(ClientCommand::Status)?;
        self.next_piece(|p| match p.piece {
            AnswerPiece::StatusText(text) => Ok(StatusAnswer::Text(text.to_string())),
            AnswerPiece::Status(f) => Ok(StatusAnswer::Refused {
                status: f.status,
                request: f.request,
                detail: f.detail.to_string(),
            }),
            piece => Err(unexpected("Status", &piece)),
        })?
    }

    /// Lists the contacts this connection may read, in (username, contact) order: its own
    /// once authenticated, every contact on a server with `--open-contacts`.
    ///
    /// # Errors
    /// Read errors; `InvalidData` for a malformed answer (or a refusal).
    pub fn list_all(&mut self) -> io::Result<Vec<Listed>> {
        let mut out = Vec::new();
        self.list_each(|u, c, p| out.push((u.to_string(), c.to_string(), p.to_string())))?;
        Ok(out)
    }

    /// Lists every contact, calling `f` for each as it is read, without holding the list;
    /// returns the count the server announced.
    ///
    /// # Errors
    /// As [`Self::list_all`].
    pub fn list_each(&mut self, mut f: impl FnMut(&str, &str, &str)) -> io::Result<u32> {
        self.ask(ClientCommand::ListAll)?;
        let mut count = 0;
        loop {
            let done = self.next_piece(|p| {
                match p.piece {
                    AnswerPiece::Count(n) => count = n,
                    AnswerPiece::ClientRecord(r) => f(r.username, r.contact, r.phone),
                    piece => return Err(unexpected("ListAll", &piece)),
                }
                Ok(p.outcome == Outcome::Answered(()))
            })??;
            if done {
                return Ok(count);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::fixtures;
    use std::net::TcpListener;
    use std::thread;

    /// A one-connection server on loopback: reads the hello, then for each step reads one
    /// command byte and writes its answer one byte at a time, so every answer arrives cut
    /// at every offset.
    fn serve(answers: Vec<Vec<u8>>) -> (SocketAddr, thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("addr");
        let server = thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut hello = [0u8; tcp::HELLO_LEN];
            s.read_exact(&mut hello).expect("hello");
            for answer in answers {
                s.read_exact(&mut [0u8; 1]).expect("a command");
                for b in answer {
                    if s.write_all(&[b]).is_err() {
                        return;
                    }
                }
            }
        });
        (addr, server)
    }

    fn client(addr: SocketAddr) -> ContactsClient {
        ContactsClient::connect(addr, "test", Duration::from_secs(10)).expect("connect")
    }

    #[test]
    fn list_status_and_barrier_from_fixture_bytes() {
        let bytes = |name| fixtures::named(name).expect(name).bytes();
        let (addr, server) = serve(vec![
            bytes("tcp/answer/list-all"),
            bytes("tcp/answer/status"),
            bytes("tcp/answer/barrier"),
        ]);
        let mut c = client(addr);
        let listed = c.list_all().expect("list");
        assert_eq!(listed, vec![("alice".into(), "bob".into(), "555".into())]);
        assert_eq!(c.status().expect("status"), "name=rendezvous\nclock=11\n");
        c.barrier().expect("barrier");
        server.join().expect("server");
    }

    #[test]
    fn refusals_are_errors() {
        let refused = fixtures::named("tcp/answer/refusal/store-failure-mid-list")
            .expect("fixture")
            .bytes();
        let (addr, server) = serve(vec![refused]);
        let mut c = client(addr);
        let mut seen = Vec::new();
        let e = c
            .list_each(|u, _, _| seen.push(u.to_string()))
            .expect_err("refused");
        assert_eq!(seen, ["alice"], "records before the refusal are handed out");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("refused ListAll: 503"), "{e}");
        server.join().expect("server");

        let (addr, server) = serve(vec![vec![7, 1, 0xf7, 5, 2, b'n', b'o']]);
        let e = client(addr).barrier().expect_err("503");
        assert_eq!(e.kind(), io::ErrorKind::Other);
        assert_eq!(e.to_string(), "server answered 503: no");
        server.join().expect("server");
    }

    #[test]
    fn a_closed_connection_or_stray_bytes_are_errors() {
        let (addr, server) = serve(vec![vec![0, 0]]);
        let e = client(addr).list_all().expect_err("cut");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        server.join().expect("server");

        let (addr, server) = serve(vec![vec![3, 0, 0, 0, 1]]);
        let e = client(addr).barrier().expect_err("not a status frame");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        server.join().expect("server");
    }
}
