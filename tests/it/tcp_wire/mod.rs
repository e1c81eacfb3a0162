//! Tests of the TCP-plane wire codecs (`src/wire/tcp/`): byte fixtures written by hand
//! from docs/PROTOCOL.md §8's layouts (§8.13's examples) and checked in both
//! directions; emit-then-parse round trips of every frame; arbitrary and mutated bytes never
//! make a parser or a length function panic, and whatever parses re-emits to the same bytes;
//! a frame cut at any offset is "need more" (`Ok(None)`) from the length functions and
//! `Truncated` from the parsers, never a different frame.

use rendezvous::wire::tcp::ContactFields;
use rendezvous::wire::WireError;

mod answers;
mod commands;
mod framing;
mod hello;
mod properties;
mod public_fixtures;

// ---------------------------------------------------------------------------------------
// Fixture helpers
// ---------------------------------------------------------------------------------------

/// Bytes from hand-written hex (whitespace ignored).
fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(digits.len() % 2 == 0, "odd hex fixture");
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

fn zeros(n: usize) -> Vec<u8> {
    vec![0; n]
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

/// "Beloin", then NUL padding to 256 (an example username).
fn beloin_256() -> Vec<u8> {
    cat(&[hex("42 65 6c 6f 69 6e"), zeros(250)])
}

/// "Juan", then NUL padding to 256.
fn juan_256() -> Vec<u8> {
    cat(&[hex("4a 75 61 6e"), zeros(252)])
}

/// "85999999999" (11 bytes), then NUL padding to 20.
fn phone_20() -> Vec<u8> {
    cat(&[hex("38 35 39 39 39 39 39 39 39 39 39"), zeros(9)])
}

fn example_fields() -> ContactFields<'static> {
    ContactFields {
        username: "Beloin",
        contact: "Juan",
        phone: "85999999999",
    }
}

fn emitted(f: impl Fn(&mut [u8]) -> Result<usize, WireError>) -> Vec<u8> {
    let mut buf = vec![0xAA; 1024];
    let n = f(&mut buf).expect("emit");
    buf.truncate(n);
    buf
}
