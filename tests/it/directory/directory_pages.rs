//! The full directory: pages cover every entry once, in order, and the digests agree; the
//! refresh pass waits for room in the peer outbox, and an overflow drops the oldest.

use super::{drain_records, lone, pages, Client, Fed, MONO0};
use rendezvous::core::udp::{DirectoryPage, FederationConfig, UdpConfig};
use rendezvous::core::PeerOut;
use rendezvous::wire::tcp::dir::{DirRecord, RecordBody};
use std::collections::BTreeSet;

#[test]
fn directory_pages_cover_everything_once_in_order_and_digests_agree() {
    let mut fed = Fed::line(5);
    let mut all = BTreeSet::new();
    for i in 0..5 {
        for k in 0..3 {
            let c = Client::new(&format!("192.0.2.{}:{}", 10 + i, 4000 + k));
            fed.register(i, &c);
            all.insert(c.fp());
        }
    }
    fed.advance(2_000);
    fed.assert_converged();
    assert_eq!(fed.digests()[0].0, 15);
    let now = fed.now;
    for max in [1, 4, 15, 100] {
        let got = pages(&fed.nodes[2], now, max);
        let fps: Vec<_> = got.iter().map(|x| x.1).collect();
        assert_eq!(fps, all.iter().copied().collect::<Vec<_>>(), "max {max}");
        for (body, fp) in &got {
            let rec = DirRecord::parse(body).unwrap();
            let RecordBody::Registration(reg) = rec.body else {
                unreachable!()
            };
            let local = fed.nodes[2].client(fp, now).is_some();
            assert_eq!(reg.home == "C", local);
            if local {
                assert_eq!(rec.hops, 0);
            } else {
                let stored = fed.nodes[2].remote(fp, now).unwrap().hops;
                assert_eq!(rec.hops, stored + 1);
            }
        }
    }
    let mut none = Vec::new();
    assert_eq!(
        fed.nodes[2].directory_page(now, None, 0, &mut none),
        DirectoryPage {
            last: None,
            more: true,
            records: 0
        }
    );
    let last = *all.iter().last().unwrap();
    assert_eq!(
        fed.nodes[2].directory_page(now, Some(last), 5, &mut none),
        DirectoryPage {
            last: None,
            more: false,
            records: 0
        }
    );
    assert!(none.is_empty());
    // A newcomer fed C's pages agrees with everybody.
    let mut f = lone(&fed, "F");
    for (body, _) in pages(&fed.nodes[2], now, 7) {
        assert_eq!(f.apply_peer_record(now, &body), Ok(true));
    }
    assert_eq!(f.directory_digest(), fed.digests()[0]);
    assert_eq!(f.remote_online(), 15);
}

#[test]
fn refresh_pass_waits_for_outbox_room_and_overflow_drops_the_oldest() {
    let mut fed = Fed::line_with(1, |_| UdpConfig {
        federation: FederationConfig {
            max_peer_out: 8,
            ..FederationConfig::default()
        },
        ..UdpConfig::default()
    });
    let clients: Vec<_> = (0..20)
        .map(|k| Client::new(&format!("192.0.2.{}:4000", 10 + k)))
        .collect();
    for c in &clients {
        let _ = fed.register_only(0, c);
        assert_eq!(drain_records(&mut fed.nodes[0]).len(), 1);
    }
    fed.set_clock(10_000);
    for c in &clients {
        fed.keepalive(0, c);
    }
    // The refresh pass fills at most half the outbox, then goes on 10 ms later.
    fed.set_clock(25_000);
    let mut refreshed = BTreeSet::new();
    for _ in 0..10 {
        fed.tick(0);
        let got = drain_records(&mut fed.nodes[0]);
        assert!(got.len() <= 4, "{}", got.len());
        for b in got {
            let r = DirRecord::parse(&b).unwrap();
            assert_eq!(r.body, RecordBody::Refresh);
            assert!(refreshed.insert(r.fingerprint), "announced twice");
        }
        fed.set_clock(fed.now.mono_ms - MONO0 + 10);
    }
    assert_eq!(refreshed.len(), 20);
    assert_eq!(fed.nodes[0].stats().federation.peer_out_dropped, 0);
    // Ten registrations with nobody draining: the two oldest records are dropped and the
    // server asks for a resync first.
    let more: Vec<_> = (0..10)
        .map(|k| Client::new(&format!("198.51.100.{}:4000", 10 + k)))
        .collect();
    for c in &more {
        let _ = fed.register_only(0, c);
    }
    assert_eq!(fed.nodes[0].stats().federation.peer_out_dropped, 2);
    assert_eq!(fed.nodes[0].poll_peer_out(), Some(PeerOut::WantDirectory));
    let left = drain_records(&mut fed.nodes[0]);
    assert_eq!(left.len(), 8);
    assert_eq!(
        DirRecord::parse(&left[0]).unwrap().fingerprint,
        more[2].fp(),
        "the oldest went first"
    );
}
