//! STUN on the UDP port (docs/PROTOCOL.md §11): the I/O-free core on a virtual clock
//! (Binding requests answered with the reflexive address, malformed ones dropped without a
//! state change, the lookup byte budget, answers always under 3 times the request), then
//! the real binary against the STUN clients of the distribution: coturn's
//! `turnutils_stunclient` and `stun` (package stun-client, an RFC 3489 client). A missing
//! tool skips with a note, or fails under `CI=true`.

use crate::common::{run, Server};
use rendezvous::core::udp::{UdpConfig, UdpCore};
use rendezvous::core::Now;
use rendezvous::wire::stun::{
    attr, fingerprint, Dialect, Stun, BINDING_ERROR, BINDING_SUCCESS, MAGIC_COOKIE,
};
use rendezvous::wire::udp::canonical_addr;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

/// A Binding request (RFC 8489) with transaction id `tid` and attributes `attrs` (already
/// padded), with a FINGERPRINT when `fp`.
fn request(tid: u8, attrs: &[u8], fp: bool) -> Vec<u8> {
    let mut m = vec![0x00, 0x01, 0, 0];
    m.extend_from_slice(&MAGIC_COOKIE);
    m.extend_from_slice(&[tid; 12]);
    m.extend_from_slice(attrs);
    let len = m.len() - 20 + if fp { 8 } else { 0 };
    m[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    if fp {
        let crc = fingerprint(&m);
        m.extend_from_slice(&[0x80, 0x28, 0, 4]);
        m.extend_from_slice(&crc.to_be_bytes());
    }
    m
}

/// What stun-client 0.97 sends (RFC 3489: no cookie), CHANGE-REQUEST with `flags`.
fn classic(flags: u8) -> Vec<u8> {
    let mut m = vec![0x00, 0x01, 0x00, 0x08];
    m.extend_from_slice(&[0x01, 0x5b, 0xfd, 0x3d, 0xb1, 0x42, 0x7a, 0x22]);
    m.extend_from_slice(&[0xec, 0x0e, 0x43, 0x7c, 0xb1, 0xf5, 0xa6, 0x18]);
    m.extend_from_slice(&[0x00, 0x03, 0x00, 0x04, 0, 0, 0, flags]);
    m
}

/// The address a Binding success response carries, read by hand from RFC 8489 §14.1-14.2
/// (an oracle independent of the emitter).
fn mapped_of(resp: &[u8]) -> SocketAddr {
    let msg = Stun::parse(resp).expect("a well-formed STUN response");
    assert_eq!(msg.message_type(), BINDING_SUCCESS);
    let a = msg
        .attributes()
        .find(|a| a.kind == attr::XOR_MAPPED_ADDRESS || a.kind == attr::MAPPED_ADDRESS)
        .expect("an address attribute");
    let v = a.value;
    let xor = a.kind == attr::XOR_MAPPED_ADDRESS;
    let key = &resp[4..20];
    let port = u16::from_be_bytes([v[2], v[3]]) ^ if xor { 0x2112 } else { 0 };
    let mut ip = v[4..].to_vec();
    if xor {
        ip.iter_mut().zip(key).for_each(|(b, k)| *b ^= k);
    }
    let ip = match v[1] {
        1 => IpAddr::from(<[u8; 4]>::try_from(&ip[..]).unwrap()),
        2 => IpAddr::from(<[u8; 16]>::try_from(&ip[..]).unwrap()),
        f => panic!("family {f}"),
    };
    SocketAddr::new(ip, port)
}

/// One UDP core on a virtual clock, collecting what it sends.
struct Core {
    core: UdpCore,
    now: Now,
}

impl Core {
    fn new(cfg: UdpConfig) -> Core {
        let now = Now {
            mono_ms: 1_000_000,
            unix_s: 1_767_225_600,
        };
        Core {
            core: UdpCore::new(cfg, [7; 32], now),
            now,
        }
    }

    /// Feeds `data` from `src`; returns the replies, each checked: to `src` only, and
    /// under 3 times the request (docs/PROTOCOL.md §11.4, docs/SECURITY.md T3).
    fn send(&mut self, src: SocketAddr, data: &[u8]) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        self.core
            .handle_datagram(self.now, src, data, &mut |dst, bytes| {
                assert_eq!(
                    dst,
                    canonical_addr(src),
                    "STUN answers go to the source only"
                );
                got.push(bytes.to_vec());
            });
        for r in &got {
            assert!(
                r.len() < 3 * data.len(),
                "amplification: {} bytes answer {} bytes",
                r.len(),
                data.len()
            );
        }
        got
    }
}

#[test]
fn binding_requests_get_the_reflexive_address_under_three_times_their_size() {
    let mut c = Core::new(UdpConfig::default());
    let cases = [
        ("192.0.2.1:4000", request(1, &[], false), 40),
        ("192.0.2.1:4000", request(2, &[], true), 40),
        ("[2001:db8::1]:5000", request(3, &[], false), 52),
        ("[::ffff:192.0.2.9]:6000", request(4, &[], true), 40),
    ];
    for (src, req, len) in cases {
        let got = c.send(addr(src), &req);
        assert_eq!(got.len(), 1, "one answer to {src}");
        let r = &got[0];
        assert_eq!(r.len(), len);
        assert_eq!(&r[4..20], &req[4..20], "cookie and transaction id copied");
        let want = canonical_addr(addr(src));
        assert_eq!(mapped_of(r), want);
        let n = r.len();
        assert_eq!(&r[n - 8..n - 4], &[0x80, 0x28, 0, 4], "FINGERPRINT last");
        println!(
            "STUN {src}: request {} bytes, answer {} bytes, ratio {:.2}",
            req.len(),
            r.len(),
            r.len() as f64 / req.len() as f64
        );
    }
    // An optional attribute we do not know (SOFTWARE) is ignored.
    let soft = request(5, &[0x80, 0x22, 0, 3, b'a', b'b', b'c', 0], true);
    assert_eq!(c.send(addr("192.0.2.1:4000"), &soft).len(), 1);
    let s = c.core.stats();
    assert_eq!(
        (s.datagrams.stun_answered, s.datagrams.stun_dropped),
        (5, 0)
    );
    assert_eq!(c.core.online(), 0, "STUN registers nobody");
}

#[test]
fn rfc3489_clients_get_mapped_address_and_no_answer_to_a_change_request() {
    let mut c = Core::new(UdpConfig::default());
    let src = addr("198.51.100.7:3478");
    let got = c.send(src, &classic(0));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].len(), 32);
    assert_eq!(&got[0][4..20], &classic(0)[4..20], "the 128-bit id copied");
    assert_eq!(Stun::parse(&got[0]).unwrap().dialect(), Dialect::Rfc3489);
    assert_eq!(mapped_of(&got[0]), src);
    // Change IP, change port: this server has one address; no answer, as from a server
    // whose other address is unreachable.
    assert!(c.send(src, &classic(4)).is_empty());
    assert!(c.send(src, &classic(2)).is_empty());
}

#[test]
fn unknown_comprehension_required_attributes_get_420() {
    let mut c = Core::new(UdpConfig::default());
    let src = addr("192.0.2.1:4000");
    // CHANGE-REQUEST asking for a change, and RESPONSE-PORT (RFC 5780): not acted on.
    let attrs = [
        0x00, 0x03, 0, 4, 0, 0, 0, 6, 0x00, 0x27, 0, 2, 0x12, 0x34, 0, 0,
    ];
    let req = request(9, &attrs, true);
    let got = c.send(src, &req);
    assert_eq!(got.len(), 1);
    let msg = Stun::parse(&got[0]).unwrap();
    assert_eq!(msg.message_type(), BINDING_ERROR);
    let value = |k| {
        msg.attributes()
            .find(|a| a.kind == k)
            .unwrap()
            .value
            .to_vec()
    };
    assert_eq!(value(attr::ERROR_CODE), [0, 0, 4, 20]);
    assert_eq!(value(attr::UNKNOWN_ATTRIBUTES), [0x00, 0x03, 0x00, 0x27]);
    // A CHANGE-REQUEST asking for no change is honoured: a plain answer.
    let req = request(10, &[0x00, 0x03, 0, 4, 0, 0, 0, 0], true);
    assert_eq!(mapped_of(&c.send(src, &req)[0]), src);
}

#[test]
fn malformed_stun_and_non_requests_are_dropped_without_a_state_change() {
    let mut c = Core::new(UdpConfig::default());
    let src = addr("192.0.2.1:4000");
    let before = c.core.stats();
    let mut bad_fp = request(1, &[], true);
    bad_fp[27] ^= 1;
    let mut truncated_attr = request(2, &[0x80, 0x22, 0, 9, 0, 0, 0, 0], false);
    truncated_attr.truncate(28);
    let mut indication = request(3, &[], false);
    indication[1] = 0x11;
    let mut response = request(4, &[], false);
    response[0] = 0x01;
    let mut unaligned = request(5, &[1, 2], false);
    unaligned[3] = 2;
    for (what, d) in [
        ("bad FINGERPRINT", &bad_fp),
        ("attribute past the end", &truncated_attr),
        ("Binding indication", &indication),
        ("Binding success response", &response),
        ("length not a multiple of 4", &unaligned),
    ] {
        assert!(c.send(src, d).is_empty(), "{what}: no answer");
    }
    let after = c.core.stats();
    assert_eq!(after.datagrams.stun_dropped, 5);
    assert_eq!(after.datagrams.stun_answered, 0);
    assert_eq!(
        after.emitted.errors, before.emitted.errors,
        "no Root error either"
    );
    assert_eq!(c.core.online(), 0);
    // Still served afterwards.
    assert_eq!(c.send(src, &request(6, &[], true)).len(), 1);
}

#[test]
fn stun_answers_spend_the_lookup_byte_budget_of_the_source_ip() {
    let mut cfg = UdpConfig::default();
    cfg.limits.lookup_bytes_per_s = 400; // 10 answers of 40 bytes
    let mut c = Core::new(cfg);
    let a = addr("203.0.113.5:1000");
    let b = addr("203.0.113.5:2000"); // same IP, other port: same budget
    let other = addr("203.0.113.6:1000");
    let mut answered = 0;
    for i in 0..20u8 {
        let src = if i % 2 == 0 { a } else { b };
        answered += c.send(src, &request(i, &[], true)).len();
    }
    assert_eq!(answered, 10, "400 bytes/s, 40 bytes an answer");
    assert_eq!(c.send(other, &request(99, &[], true)).len(), 1, "per IP");
    c.now.mono_ms += 100; // 40 bytes refilled
    assert_eq!(c.send(a, &request(98, &[], true)).len(), 1);
    assert!(c.send(a, &request(97, &[], true)).is_empty());
    assert_eq!(c.core.stats().datagrams.stun_dropped, 11);
    // Loopback is exempt, as for lookups (docs/PROTOCOL.md §5.9).
    let lo = addr("127.0.0.1:5000");
    for i in 0..20u8 {
        assert_eq!(c.send(lo, &request(i, &[], true)).len(), 1);
    }
}

/// Every datagram that looks like STUN by its first byte and cookie, whatever follows, is
/// answered with less than 3 times its size, or not at all (docs/SECURITY.md T3).
#[test]
fn no_stun_looking_datagram_is_amplified_three_times() {
    let mut c = Core::new(UdpConfig::default());
    let src = addr("192.0.2.77:4000");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..5000usize {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let body = (i % 12) * 4;
        let mut d = request((i % 251) as u8, &vec![0; body], false);
        for (j, b) in d.iter_mut().enumerate().skip(20) {
            *b = (x >> (j % 8 * 8)) as u8;
        }
        d[0] = (x % 4) as u8;
        c.send(src, &d); // asserts the bound
    }
}

// ---------------------------------------------------------------------------------------
// The real binary and the distribution's STUN clients
// ---------------------------------------------------------------------------------------

/// True when `CI` is `true` (or `1`): a missing tool is then a failure, not a skip.
fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Whether `tool` runs here; panics under CI when it does not.
fn have(tool: &str, package: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
    if !found {
        assert!(
            !ci(),
            "{tool} missing, and CI=true forbids skipping (apt-get install {package})"
        );
        eprintln!("note: {tool} not found (package {package}); STUN client test skipped");
    }
    found
}

/// `turnutils_stunclient -p PORT 127.0.0.1` (coturn) sends an RFC 5389 Binding request and
/// prints `UDP reflexive addr: 127.0.0.1:PORT` with the port it sent from.
#[test]
fn coturn_stunclient_reads_its_reflexive_address() {
    if !have("turnutils_stunclient", "coturn") {
        return;
    }
    let server = Server::start(&[]);
    let mut cmd = Command::new("turnutils_stunclient");
    cmd.args(["-p", &server.addr.port().to_string(), "127.0.0.1"]);
    let done = run("turnutils_stunclient", cmd, T);
    done.assert_success("turnutils_stunclient");
    let line = done
        .stdout
        .iter()
        .find(|l| l.contains("UDP reflexive addr: "))
        .unwrap_or_else(|| panic!("no reflexive address in {:?}", done.stdout));
    let text = line.split("UDP reflexive addr: ").nth(1).unwrap().trim();
    let got: SocketAddr = text.parse().expect("IP:PORT");
    assert_eq!(got.ip(), IpAddr::from([127, 0, 0, 1]));
    assert_ne!(got.port(), 0);
    assert_ne!(got.port(), server.addr.port());
}

/// A free UDP port on loopback (taken and given back; the client binds it next).
fn free_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.local_addr().expect("addr").port()
}

/// `stun 127.0.0.1:PORT 1 -v -p SRC` (stun-client 0.97, RFC 3489, no magic cookie; `-p`
/// is its source port, the server's port goes after the host) runs RFC 3489's test I and
/// prints `mappedAddr=127.0.0.1:SRC`.
#[test]
fn stun_client_reads_its_mapped_address() {
    if !have("stun", "stun-client") {
        return;
    }
    let server = Server::start(&[]);
    let mut last = Vec::new();
    // The source port is picked free and handed over; another process may take it in
    // between, so a few tries.
    for _ in 0..3 {
        let src = free_port();
        let mut cmd = Command::new("stun");
        cmd.args([
            &format!("127.0.0.1:{}", server.addr.port()),
            "1",
            "-v",
            "-p",
            &src.to_string(),
        ]);
        let done = run("stun", cmd, T);
        let want = format!("mappedAddr=127.0.0.1:{src}");
        if done
            .stdout
            .iter()
            .chain(&done.stderr)
            .any(|l| l.trim() == want)
        {
            return;
        }
        last = [done.stdout, done.stderr].concat();
    }
    panic!("stun printed no mappedAddr for its source port: {last:?}");
}
