//! Captures mixed with other traffic (DNS, HTTP, ICMP, ARP, fragments, random bytes): it is
//! skipped and counted, and without `--port` decode finds the server's port by its traffic,
//! or refuses a capture of other traffic only (or of none).

use super::{
    client_stream, decode, decode_with, frames, ipv4, ipv6, lookup_bytes, pcap, server_stream,
    summary, tcp, tmp, udp, write, Link, ACK, C4, C6, CLIENT_PORT, PORT, PROTO_ICMP, PROTO_TCP,
    PROTO_UDP, PSH, S4, S6, SYN, T0,
};
use rendezvous::tools::capture::read_capture;

/// Raw IP packets of an HTTP connection to port 80: SYN, SYN-ACK, and a request.
fn http() -> Vec<(u64, Vec<u8>)> {
    let request = tcp(41000, 80, 2, 10, PSH | ACK, b"GET / HTTP/1.0\r\n\r\n");
    vec![
        (
            T0 + 12,
            ipv4(C4, S4, PROTO_TCP, &tcp(41000, 80, 1, 0, SYN, &[]), 0),
        ),
        (
            T0 + 13,
            ipv4(S4, C4, PROTO_TCP, &tcp(80, 41000, 9, 2, SYN | ACK, &[]), 0),
        ),
        (T0 + 14, ipv4(C4, S4, PROTO_TCP, &request, 0)),
    ]
}

#[test]
fn other_traffic_is_skipped_and_counted() {
    let dir = tmp();
    let eth = |p: &[u8]| Link::Ethernet.frame(p, false);
    let mut packets = frames(Link::Ethernet, false, false);
    // DNS query and answer (UDP 53).
    let dns = [0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    packets.push((
        T0 + 10,
        eth(&ipv4(C4, S4, PROTO_UDP, &udp(5353, 53, &dns), 0x4000)),
    ));
    packets.push((
        T0 + 11,
        eth(&ipv4(S4, C4, PROTO_UDP, &udp(53, 5353, &dns), 0x4000)),
    ));
    // TCP on port 80, both ways.
    packets.extend(http().into_iter().map(|(t, p)| (t, eth(&p))));
    // An IPv4 fragment of a datagram to the project's port (more fragments follow).
    packets.push((
        T0 + 15,
        eth(&ipv4(
            C4,
            S4,
            PROTO_UDP,
            &udp(CLIENT_PORT, PORT, &lookup_bytes()),
            0x2000,
        )),
    ));
    // ICMP, ARP, and an IPv6 UDP datagram between other ports.
    packets.push((
        T0 + 16,
        eth(&ipv4(C4, S4, PROTO_ICMP, &[8, 0, 0, 0, 0, 1, 0, 1], 0)),
    ));
    packets.push((T0 + 17, Link::Ethernet.frame_of(0x0806, &[0u8; 28], false)));
    packets.push((
        T0 + 18,
        eth(&ipv6(C6, S6, PROTO_UDP, &udp(1000, 2000, b"x"))),
    ));
    packets.sort_by_key(|(t, _)| *t);
    let (bytes, _) = pcap(false, false, 1, &packets);
    let path = write(dir.path(), "mixed.pcap", &bytes);
    let read = read_capture(&path, PORT).expect("read");
    assert!(read.error.is_none());
    assert_eq!(read.packets, 8 + 9);
    assert_eq!(read.skipped, 9);
    assert_eq!(read.datagrams.len(), 2);
    assert_eq!(read.datagrams[0].payload, lookup_bytes());
    assert_eq!(read.flows.len(), 1);
    assert_eq!(read.flows[0].client_data, client_stream());
    assert_eq!(read.flows[0].server_data, server_stream());

    let done = decode(&path, PORT, false);
    done.assert_success("decode");
    assert_eq!(done.stdout.len(), 6, "lines:\n{}", done.stdout.join("\n"));
    assert!(
        !done
            .stdout
            .iter()
            .any(|l| l.contains(":53") || l.contains(":80 ")),
        "other traffic decoded:\n{}",
        done.stdout.join("\n")
    );
    assert!(
        done.stderr
            .iter()
            .any(|l| l.contains("17 packets read") && l.contains("9 skipped")),
        "summary: {:?}",
        done.stderr
    );
}

/// A small deterministic generator (xorshift64*), for bytes that are no protocol at all.
fn noise(seed: &mut u64) -> u64 {
    *seed ^= *seed >> 12;
    *seed ^= *seed << 25;
    *seed ^= *seed >> 27;
    seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// Raw IP packets (link type 101) of other protocols' UDP, with capture times from `t0`:
/// 64 DNS queries to port 53 and their answers (IDs over the whole range of the first
/// byte), and 300 datagrams of random bytes (12 to 211 long) between ports 5000-5099 and
/// 9999, both ways.
pub(crate) fn foreign_udp(t0: u64) -> Vec<(u64, Vec<u8>)> {
    let mut packets = Vec::new();
    let mut t = t0;
    for i in 0..64u16 {
        let id = (i * 0x0405).to_be_bytes();
        let mut q = vec![id[0], id[1], 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(b"\x07example\x03com\x00\x00\x01\x00\x01");
        let mut a = q.clone();
        a[2..4].copy_from_slice(&[0x81, 0x80]);
        a[7] = 1;
        a.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 192, 0, 2, 1]);
        let port = 30_000 + i;
        packets.push((t, ipv4(C4, S4, PROTO_UDP, &udp(port, 53, &q), 0x4000)));
        packets.push((t + 1, ipv4(S4, C4, PROTO_UDP, &udp(53, port, &a), 0x4000)));
        t += 10;
    }
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..300u64 {
        let len = 12 + (noise(&mut seed) % 200) as usize;
        let data: Vec<u8> = (0..len).map(|_| noise(&mut seed) as u8).collect();
        let port = 5000 + (i % 100) as u16;
        let (sp, dp, src, dst) = if i % 2 == 0 {
            (port, 9999, C4, S4)
        } else {
            (9999, port, S4, C4)
        };
        packets.push((t, ipv4(src, dst, PROTO_UDP, &udp(sp, dp, &data), 0x4000)));
        t += 10;
    }
    packets
}

/// A pcap (raw IP) of other protocols' UDP only.
pub(crate) fn foreign_capture() -> Vec<u8> {
    pcap(false, false, 101, &foreign_udp(T0)).0
}

/// An empty pcap: the file header and no packet.
pub(crate) fn empty_capture() -> Vec<u8> {
    pcap(false, false, 101, &[]).0
}

#[test]
fn without_a_port_decode_finds_the_server_port_among_dns_http_and_noise() {
    let dir = tmp();
    let eth = |p: &[u8]| Link::Ethernet.frame(p, false);
    let mut packets = frames(Link::Ethernet, false, false);
    packets.extend(
        foreign_udp(T0 + 5000)
            .into_iter()
            .map(|(t, p)| (t, eth(&p))),
    );
    // An HTTP connection (port 80), opened and with data, never a hello.
    packets.extend(http().into_iter().map(|(t, p)| (t, eth(&p))));
    packets.sort_by_key(|(t, _)| *t);
    let (bytes, _) = pcap(false, false, 1, &packets);
    let path = write(dir.path(), "mixed.pcap", &bytes);

    let given = decode(&path, PORT, false);
    given.assert_success("decode --port");
    let found = decode_with(&path, None, false);
    found.assert_success("decode without --port");
    assert_eq!(found.stdout, given.stdout, "the same lines as with --port");
    assert_eq!(found.stdout.len(), 6, "{}", found.stdout.join("\n"));
    assert_eq!(summary(&found), summary(&given), "the same counts");
    let note = format!(
        "decode: port {PORT} carries the protocol (udp: 2 of 2 datagrams are Root packets; \
         tcp: 1 of 1 connections open with a hello)"
    );
    assert!(found.stderr.contains(&note), "{:?}", found.stderr);
    let notes = found
        .stderr
        .iter()
        .filter(|l| l.contains("carries the protocol"))
        .count();
    assert_eq!(notes, 1, "only the server's port: {:?}", found.stderr);
    let json = decode_with(&path, None, true);
    json.assert_success("decode --json without --port");
    assert_eq!(json.stdout, decode(&path, PORT, true).stdout);
}

#[test]
fn without_a_port_a_capture_of_other_traffic_or_none_is_refused() {
    let dir = tmp();
    let foreign = write(dir.path(), "foreign.pcap", &foreign_capture());
    let empty = write(dir.path(), "empty.pcap", &empty_capture());
    for (path, packets) in [(&foreign, 428), (&empty, 0)] {
        let done = decode_with(path, None, false);
        assert_eq!(done.status.code(), Some(1), "{done:?}");
        assert!(done.stdout.is_empty(), "no lines: {:?}", done.stdout);
        let want = format!(
            "error: {}: no traffic of this protocol in its {packets} packets",
            path.display()
        );
        let err = done.stderr.join("\n");
        assert!(err.starts_with(&want), "{err}");
        assert!(err.contains("give --port N"), "{err}");
    }
    // --port overrides: port 53 is decoded as asked, every datagram malformed.
    let done = decode(&foreign, 53, false);
    done.assert_success("decode --port 53");
    assert_eq!(done.stdout.len(), 128, "{}", done.stdout.join("\n"));
    assert!(done
        .stdout
        .iter()
        .all(|l| l.contains(":53 ") && l.contains("malformed")));
    assert!(summary(&done).contains("(port 53: 128 udp datagrams"));
    let done = decode(&empty, PORT, false);
    done.assert_success("decode --port of an empty capture");
    assert!(done.stdout.is_empty());
}
