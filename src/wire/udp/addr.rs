//! The address inside UDP payloads: a family byte, the address, the port. IPv4-mapped IPv6
//! is always written as family 4, and read as IPv4 whichever family carries it
//! (docs/PROTOCOL.md §1 "Addresses").
//!
//! ```text
//! +--------+--------------------+---------+
//! | family | addr               | port    |
//! |   u8   | 4 bytes (family 4) |   u16   |     7 bytes in all
//! |        | 16 bytes (family 6)|         |    19 bytes in all
//! +--------+--------------------+---------+
//! ```

use crate::wire::bytes::{room, take, take_u8};
use crate::wire::WireError;
use byteorder::{BigEndian, ByteOrder};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Canonical form of an address for the wire: IPv4-mapped IPv6 becomes IPv4.
#[inline]
pub fn canonical_addr(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => addr,
        },
        v4 => v4,
    }
}

/// Bytes `[family][addr][port]` take for `addr`: 7 for IPv4 (or mapped), 19 for IPv6.
#[inline]
pub fn addr_len(addr: SocketAddr) -> usize {
    match canonical_addr(addr) {
        SocketAddr::V4(_) => 7,
        SocketAddr::V6(_) => 19,
    }
}

/// Writes `[family u8][addr 4|16][port u16]`; returns the bytes written (7 or 19).
///
/// # Errors
/// [`WireError::BufferTooSmall`].
#[inline]
pub fn emit_addr(addr: SocketAddr, buf: &mut [u8]) -> Result<usize, WireError> {
    let addr = canonical_addr(addr);
    let n = addr_len(addr);
    room(buf, n)?;
    put_family_ip(addr.ip(), buf);
    BigEndian::write_u16(&mut buf[n - 2..n], addr.port());
    Ok(n)
}

/// Writes the family byte (4 or 6) and the 4 or 16 address bytes at the start of `buf`,
/// which holds at least 5 or 17 bytes (checked by the callers). The address must already
/// be canonical ([`canonical_addr`]).
#[inline]
pub(crate) fn put_family_ip(ip: IpAddr, buf: &mut [u8]) {
    match ip {
        IpAddr::V4(ip) => {
            buf[0] = 4;
            buf[1..5].copy_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            buf[0] = 6;
            buf[1..17].copy_from_slice(&ip.octets());
        }
    }
}

/// Reads `[family u8][addr 4|16][port u16]` at `*pos`, advancing it; an IPv4-mapped
/// address under family 6 is returned as IPv4 ([`canonical_addr`]).
///
/// # Errors
/// [`WireError::BadFamily`] for a family other than 4 or 6; [`WireError::Truncated`].
#[inline]
pub fn parse_addr(buf: &[u8], pos: &mut usize) -> Result<SocketAddr, WireError> {
    let ip = match take_u8(buf, pos)? {
        4 => {
            let b: [u8; 4] = take(buf, pos, 4)?
                .try_into()
                .map_err(|_| WireError::Truncated)?;
            IpAddr::V4(Ipv4Addr::from(b))
        }
        6 => {
            let b: [u8; 16] = take(buf, pos, 16)?
                .try_into()
                .map_err(|_| WireError::Truncated)?;
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return Err(WireError::BadFamily),
    };
    let port = BigEndian::read_u16(take(buf, pos, 2)?);
    // Canonical, as written: family 6 holding an IPv4-mapped address reads as IPv4, so
    // that what is read is emitted back the same (found by the udp_datagram fuzz target).
    Ok(canonical_addr(SocketAddr::new(ip, port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_families_and_mapped() {
        let mut buf = [0u8; 19];
        let v4: SocketAddr = "192.0.2.1:4747".parse().unwrap();
        assert_eq!(emit_addr(v4, &mut buf), Ok(7));
        assert_eq!(buf[..7], [4, 192, 0, 2, 1, 0x12, 0x8b]);
        let mapped: SocketAddr = "[::ffff:192.0.2.1]:4747".parse().unwrap();
        assert_eq!(emit_addr(mapped, &mut buf), Ok(7));
        let mut pos = 0;
        assert_eq!(parse_addr(&buf[..7], &mut pos), Ok(v4));
        let v6: SocketAddr = "[2001:db8::1]:7".parse().unwrap();
        assert_eq!(emit_addr(v6, &mut buf), Ok(19));
        let mut pos = 0;
        assert_eq!(parse_addr(&buf, &mut pos), Ok(v6));
        assert_eq!(pos, 19);
        let mut pos = 0;
        assert_eq!(parse_addr(&[5, 0, 0], &mut pos), Err(WireError::BadFamily));
        assert_eq!(
            emit_addr(v6, &mut buf[..18]),
            Err(WireError::BufferTooSmall)
        );
    }
}
