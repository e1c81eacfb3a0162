//! Captures written byte by byte (docs/PROTOCOL.md §10): every supported link type, byte
//! order and timestamp precision gives the exact streams, and `rendezvous decode` prints
//! the scenario as text and as JSON.

use super::{
    assert_scenario, decode, expect_lines, frames, parse_json, pcap, pcapng, tmp, write, Link,
    PORT, T0,
};
use rendezvous::tools::capture::read_capture;

#[test]
fn every_link_type_byte_order_and_precision_gives_the_exact_streams() {
    let dir = tmp();
    let cases: &[(&str, Link, bool, bool, bool)] = &[
        // name, link, IPv6, big-endian file, nanosecond timestamps
        ("ethernet-le", Link::Ethernet, false, false, false),
        ("ethernet-vlan-v6-be", Link::EthernetVlan, true, true, false),
        ("null-le", Link::Null, false, false, false),
        ("null-v6-be", Link::Null, true, true, false),
        ("loop-v6", Link::Loop, true, false, true),
        ("raw101-v4", Link::Raw101, false, false, false),
        ("raw101-v6-be", Link::Raw101, true, true, false),
        ("raw12-v4", Link::Raw12, false, true, true),
        ("raw228-v4-ns", Link::Ipv4Only228, false, false, true),
        ("raw229-v6", Link::Ipv6Only229, true, false, false),
        ("raw229-v6-be-ns", Link::Ipv6Only229, true, true, true),
        ("sll-v4-be", Link::Sll, false, true, false),
        ("sll-v6-ns", Link::Sll, true, false, true),
        ("sll2-v4-ns", Link::Sll2, false, false, true),
        ("sll2-v6-be", Link::Sll2, true, true, false),
    ];
    for &(name, link, v6, big, nanos) in cases {
        let (bytes, _) = pcap(big, nanos, link.number(), &frames(link, v6, big));
        let path = write(dir.path(), &format!("{name}.pcap"), &bytes);
        let read = read_capture(&path, PORT).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_scenario(name, &read, v6);
    }
    let ng: &[(&str, Link, bool, bool, bool)] = &[
        ("ng-ethernet-le", Link::Ethernet, false, false, false),
        ("ng-sll2-v6-be-ns", Link::Sll2, true, true, true),
        ("ng-raw229-be", Link::Ipv6Only229, true, true, false),
        ("ng-null-le-ns", Link::Null, false, false, true),
    ];
    for &(name, link, v6, big, nanos) in ng {
        let bytes = pcapng(big, nanos, link.number(), &frames(link, v6, big));
        let path = write(dir.path(), &format!("{name}.pcapng"), &bytes);
        let read = read_capture(&path, PORT).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_scenario(name, &read, v6);
    }
}

#[test]
fn decode_prints_the_hand_built_scenario_as_text_and_json() {
    let dir = tmp();
    let (bytes, _) = pcap(false, false, 1, &frames(Link::Ethernet, false, false));
    let path = write(dir.path(), "scenario.pcap", &bytes);
    let done = decode(&path, PORT, false);
    done.assert_success("decode");
    let out = &done.stdout;
    let target = "11".repeat(32);
    let (c, s) = ("192.0.2.10:40000", "198.51.100.1:4747");
    expect_lines(
        out,
        &[
            "2026-01-01T00:00:00.000000Z udp",
            &format!("{c} -> {s}"),
            "lookup(5) layout=plain params=0x02 timestamp=1767225600 sig_len=0",
            &format!("target={target}"),
        ],
        1,
    );
    expect_lines(
        out,
        &[&format!("udp {s} -> {c} cookie(9)"), "cookie=c0c1c2c3"],
        1,
    );
    expect_lines(
        out,
        &[&format!("tcp {c} -> {s} hello role=client name=\"cli\"")],
        1,
    );
    expect_lines(
        out,
        &[&format!(
            "tcp {c} -> {s} update(1) user=\"alice\" contact=\"bob\" phone=\"555\""
        )],
        1,
    );
    expect_lines(out, &[&format!("tcp {c} -> {s} barrier(5)")], 1);
    expect_lines(
        out,
        &[&format!(
            "tcp {s} -> {c} status(7) status=200 request=5 detail=\"durable\""
        )],
        1,
    );
    assert_eq!(out.len(), 6, "lines:\n{}", out.join("\n"));
    assert!(
        done.stderr.iter().any(|l| l.contains("8 packets read")),
        "summary: {:?}",
        done.stderr
    );

    let json = decode(&path, PORT, true);
    json.assert_success("decode --json");
    let objs = parse_json(&json.stdout);
    assert_eq!(objs.len(), out.len());
    let lookup = objs.iter().find(|o| o["type"] == "lookup").expect("lookup");
    assert_eq!(lookup["proto"], "udp");
    assert_eq!(lookup["type_num"], 5);
    assert_eq!(lookup["src"], c);
    assert_eq!(lookup["dst"], s);
    assert_eq!(lookup["target"], target.as_str());
    assert_eq!(lookup["ts"], "2026-01-01T00:00:00.000000Z");
    assert_eq!(lookup["ts_us"], T0);
    let update = objs.iter().find(|o| o["type"] == "update").expect("update");
    assert_eq!(update["proto"], "tcp");
    assert_eq!(
        (&update["user"], &update["contact"], &update["phone"]),
        (
            &serde_json::json!("alice"),
            &serde_json::json!("bob"),
            &serde_json::json!("555")
        )
    );
    let status = objs.iter().find(|o| o["type"] == "status").expect("status");
    assert_eq!(status["status"], 200);
    assert_eq!(status["request"], 5);
}
