//! A client written from the seed's byte layout (docs/PROTOCOL.md §8): hello, Updates,
//! ListAll and Barrier as raw bytes, the answer compared byte for byte.

use super::{client_update, hex, start_memory, Raw, BARRIER, LIST_ALL, T};

#[test]
fn raw_seed_client() {
    let server = start_memory("server", &[]);
    let mut c = Raw::connect(server.addr, "raw client");

    // 02 "Beloin" + 250 x 00
    let hello_bytes = [hex("02 42 65 6c 6f 69 6e"), vec![0; 250]].concat();
    assert_eq!(hello_bytes.len(), 257);
    // 01 "alice" ... "bob" ... "555"
    let alice = hex("61 6c 69 63 65");
    let bob = hex("62 6f 62");
    let carol = hex("63 61 72 6f 6c");
    let p555 = hex("35 35 35");
    let p777 = hex("37 37 37");
    let upd_bob = [
        hex("01"),
        alice.clone(),
        vec![0; 251],
        bob.clone(),
        vec![0; 253],
        p555.clone(),
        vec![0; 17],
    ]
    .concat();
    let upd_carol = [
        hex("01"),
        alice.clone(),
        vec![0; 251],
        carol.clone(),
        vec![0; 251],
        p777.clone(),
        vec![0; 17],
    ]
    .concat();
    assert_eq!(upd_bob.len(), 533);
    assert_eq!(upd_bob, client_update(b"alice", b"bob", b"555"));
    assert_eq!(upd_carol, client_update(b"alice", b"carol", b"777"));

    c.send(&hello_bytes);
    // Written in reverse key order: the answer must still be ordered by (user, contact).
    c.send(&upd_carol);
    c.send(&upd_bob);
    c.send(&[LIST_ALL]);
    c.send(&[BARRIER]);

    let expected = [hex("00 00 00 02"), upd_bob, upd_carol].concat();
    let got = c.read_n(expected.len(), T);
    assert_eq!(
        got.len(),
        4 + 2 * 533,
        "ListAll answer has the wrong length"
    );
    assert_eq!(&got[..4], &hex("00 00 00 02")[..], "ListAll count");
    assert!(
        got == expected,
        "ListAll answer differs from the hand-written bytes; first difference at byte {}",
        got.iter()
            .zip(&expected)
            .position(|(a, b)| a != b)
            .unwrap_or(0)
    );

    let st = c.read_status(T);
    assert_eq!(
        &st.raw[..4],
        &hex("07 00 c8 05")[..],
        "barrier answer {st:?}"
    );
    assert_eq!(st.status, 200);
    assert_eq!(st.request, 5);
    assert_eq!(st.raw.len(), 5 + usize::from(st.raw[4]));

    // A second ListAll after an overwrite: the newer phone wins.
    c.send(&client_update(b"alice", b"bob", b"999"));
    c.send(&[LIST_ALL]);
    let expected = [
        hex("00 00 00 02"),
        client_update(b"alice", b"bob", b"999"),
        client_update(b"alice", b"carol", b"777"),
    ]
    .concat();
    assert!(
        c.read_n(expected.len(), T) == expected,
        "ListAll after an overwrite"
    );
}
