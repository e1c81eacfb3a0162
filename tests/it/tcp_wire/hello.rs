//! The hello (docs/PROTOCOL.md §8.2): fixtures written by hand from its layout, checked in
//! both directions, its errors, and the role bytes.

use rendezvous::wire::tcp::{hello_len, Hello, Role, HELLO_LEN};
use rendezvous::wire::WireError;

use super::{beloin_256, cat, emitted, hex, zeros};

#[test]
fn hello_fixtures() {
    // Client "Beloin".
    let bytes = cat(&[hex("02"), beloin_256()]);
    assert_eq!(bytes.len(), HELLO_LEN);
    let hello = Hello {
        role: Role::Client,
        name: "Beloin",
    };
    assert_eq!(hello_len(&bytes), Ok(Some(257)));
    assert_eq!(Hello::parse(&bytes), Ok(hello));
    assert_eq!(emitted(|b| hello.emit(b)), bytes);
    assert_eq!(hello.buffer_len(), 257);

    // Server "Жюль" (multi-byte UTF-8: D0 96 D1 8E D0 BB D1 8C).
    let bytes = cat(&[hex("01 d0 96 d1 8e d0 bb d1 8c"), zeros(248)]);
    let hello = Hello {
        role: Role::Server,
        name: "Жюль",
    };
    assert_eq!(Hello::parse(&bytes), Ok(hello));
    assert_eq!(emitted(|b| hello.emit(b)), bytes);

    // A name that fills all 256 bytes (no NUL at all) is fine.
    let bytes = cat(&[hex("01"), vec![b'x'; 256]]);
    let name = "x".repeat(256);
    assert_eq!(
        Hello::parse(&bytes),
        Ok(Hello {
            role: Role::Server,
            name: &name
        })
    );

    // Empty name: all padding.
    let bytes = cat(&[hex("02"), zeros(256)]);
    assert_eq!(
        Hello::parse(&bytes),
        Ok(Hello {
            role: Role::Client,
            name: ""
        })
    );
}

#[test]
fn hello_errors() {
    for role in [0x00u8, 0x03, 0x07, 0xff] {
        let bytes = cat(&[vec![role], beloin_256()]);
        assert_eq!(Hello::parse(&bytes), Err(WireError::BadRole), "role {role}");
        assert_eq!(hello_len(&bytes[..1]), Err(WireError::BadRole));
    }
    // "Bel\0in": a NUL followed by text.
    let bytes = cat(&[hex("02 42 65 6c 00 69 6e"), zeros(250)]);
    assert_eq!(Hello::parse(&bytes), Err(WireError::InteriorNul));
    // Invalid UTF-8 (a lone continuation byte).
    let bytes = cat(&[hex("02 42 80"), zeros(254)]);
    assert_eq!(Hello::parse(&bytes), Err(WireError::BadUtf8));
    // A multi-byte character cut by the field's end.
    let bytes = cat(&[hex("02"), vec![b'a'; 255], hex("d0")]);
    assert_eq!(Hello::parse(&bytes), Err(WireError::BadUtf8));
    // Lengths.
    let good = cat(&[hex("02"), beloin_256()]);
    assert_eq!(Hello::parse(&good[..256]), Err(WireError::Truncated));
    assert_eq!(Hello::parse(&[]), Err(WireError::Truncated));
    let long = cat(&[good.clone(), hex("02")]);
    assert_eq!(Hello::parse(&long), Err(WireError::TrailingData));
    // hello_len never looks past the hello.
    assert_eq!(hello_len(&long), Ok(Some(257)));
    assert_eq!(hello_len(&[]), Ok(None));

    // Emit: refused, never cut; nothing written.
    let name = "x".repeat(257);
    let mut buf = [0xAAu8; 300];
    let h = Hello {
        role: Role::Client,
        name: &name,
    };
    assert_eq!(h.emit(&mut buf), Err(WireError::NameTooLong));
    let h = Hello {
        role: Role::Client,
        name: "a\0b",
    };
    assert_eq!(h.emit(&mut buf), Err(WireError::InteriorNul));
    let h = Hello {
        role: Role::Client,
        name: "ok",
    };
    assert_eq!(h.emit(&mut buf[..256]), Err(WireError::BufferTooSmall));
    assert!(buf.iter().all(|&b| b == 0xAA));
}

#[test]
fn role_bytes() {
    assert_eq!(Role::try_from(1), Ok(Role::Server));
    assert_eq!(Role::try_from(2), Ok(Role::Client));
    assert_eq!(Role::try_from(0), Err(WireError::BadRole));
    assert_eq!(u8::from(Role::Server), 1);
    assert_eq!(u8::from(Role::Client), 2);
}
