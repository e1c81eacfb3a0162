//! Making a drain last (docs/PROTOCOL.md §7, "Signals"): signals sent to the real server,
//! and a client on the open contacts plane that asks for every contact and never reads, so
//! a drain cannot finish before `--drain-timeout` and what a draining server answers can
//! be looked at.

use super::Server;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The read timeout of the connections opened here.
const T: Duration = Duration::from_secs(20);

/// Sends `sig` to `server`'s process.
pub fn signal(server: &Server, sig: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(server.pid() as i32).expect("a pid");
    rustix::process::kill_process(pid, sig).expect("signal the server");
}

/// A connection that said a client-role hello (docs/PROTOCOL.md §8.2).
pub fn client(server: &Server) -> TcpStream {
    let mut s = TcpStream::connect(server.addr).expect("connect");
    s.set_read_timeout(Some(T)).unwrap();
    let mut hello = vec![2u8];
    hello.resize(257, 0);
    s.write_all(&hello).unwrap();
    s
}

/// A client Update (command 1, 533 bytes) of contact `c{i}` of user `drainer`.
pub fn update(i: u32) -> Vec<u8> {
    let mut v = vec![1u8; 533];
    v[1..].fill(0);
    let (u, c) = (b"drainer".as_slice(), format!("c{i}"));
    v[1..1 + u.len()].copy_from_slice(u);
    v[257..257 + c.len()].copy_from_slice(c.as_bytes());
    v[513..514].copy_from_slice(b"1");
    v
}

/// Reads a status frame (docs/PROTOCOL.md §8.6): its code and its detail.
pub fn status_frame(s: &mut TcpStream) -> (u16, String) {
    let mut head = [0u8; 5];
    s.read_exact(&mut head).expect("a status frame");
    assert_eq!(head[0], 7, "{head:02x?}");
    let mut detail = vec![0u8; usize::from(head[4])];
    s.read_exact(&mut detail).unwrap();
    let detail = String::from_utf8_lossy(&detail).into_owned();
    (u16::from_be_bytes([head[1], head[2]]), detail)
}

/// Reads a status frame's code.
pub fn status_code(s: &mut TcpStream) -> u16 {
    status_frame(s).0
}

/// A client of a server run with `--open-contacts` that wrote 20,000 contacts, asked for
/// all of them (about 10.7 MB) and never reads: a drain cannot finish while it is open.
pub fn stuck_reader(server: &Server) -> TcpStream {
    let mut c = client(server);
    let mut bytes = Vec::new();
    for i in 0..20_000 {
        bytes.extend(update(i));
    }
    bytes.push(5);
    c.write_all(&bytes).unwrap();
    assert_eq!(status_code(&mut c), 200, "20,000 contacts written");
    c.write_all(&[2]).unwrap(); // ListAll, about 10.7 MB, never read
    c
}
