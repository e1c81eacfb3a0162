//! The capture file reader: pcap (both byte orders, microsecond and nanosecond magic, the
//! "modified" variant) and pcapng (any number of sections and interfaces, either byte
//! order), read as a stream in pieces, with the exact file offset of every record.
//!
//! Framing is done here (record and block lengths, cut detection); the records and blocks
//! themselves are parsed by `pcap-parser`. Each packet goes to [`super::link`] with its
//! link type, capture time and original length.
//!
//! Invariants: memory holds at most one record beyond the payloads kept (a record claiming
//! more bytes than the file has left is reported as a cut, never allocated); a cut or
//! corrupt file ends the read with a [`CaptureError`] in [`CaptureRead::error`] and keeps
//! everything read before it; nothing here panics on any input.

use super::link::Demux;
use super::CaptureError;
use pcap_parser::pcapng::{
    parse_block_be, parse_block_le, parse_sectionheaderblock, Block, BOM_MAGIC, EPB_MAGIC,
    IDB_MAGIC, SHB_MAGIC, SPB_MAGIC,
};
use pcap_parser::traits::PcapNGPacketBlock;
use pcap_parser::{parse_pcap_frame, parse_pcap_frame_be, parse_pcap_frame_modified};
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// Bytes asked of the file per read.
const READ_CHUNK: usize = 256 * 1024;
/// Largest packet record accepted, in bytes: far above any snaplen a tool writes (libpcap's
/// largest is 256 KiB); a larger length is a corrupt record.
const MAX_RECORD: usize = 64 * 1024 * 1024;

/// pcap magic, microsecond timestamps, as read little-endian from the first 4 bytes of a
/// file written little-endian.
const PCAP_US: u32 = 0xa1b2_c3d4;
/// pcap magic, nanosecond timestamps.
const PCAP_NS: u32 = 0xa1b2_3c4d;
/// pcap "modified" (Alexey Kuznetsov's patched libpcap) magic: 24-byte record headers.
const PCAP_MODIFIED: u32 = 0xa1b2_cd34;

/// A file read in pieces, with the offset in the file of the first unread byte.
struct Source<R> {
    inner: R,
    buf: Vec<u8>,
    pos: usize,
    /// File offset of `buf[0]`.
    base: u64,
    eof: bool,
    /// The file's length when known (a regular file): a record that claims to run past it
    /// is a cut, found without reading the rest of the file.
    len: Option<u64>,
}

impl<R: Read> Source<R> {
    fn new(inner: R, len: Option<u64>) -> Self {
        Source {
            inner,
            buf: Vec::new(),
            pos: 0,
            base: 0,
            eof: false,
            len,
        }
    }

    /// File offset of the next unread byte.
    fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// The unread bytes in memory.
    fn data(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Makes at least `n` unread bytes available; `Ok(false)` when the file ends first.
    fn need(&mut self, n: usize) -> io::Result<bool> {
        if self.buf.len() - self.pos >= n {
            return Ok(true);
        }
        if self
            .len
            .is_some_and(|len| self.offset().saturating_add(n as u64) > len)
        {
            // Cut (or a corrupt length): found without reading the rest of the file.
            return Ok(false);
        }
        self.fill_to(n)?;
        Ok(self.buf.len() - self.pos >= n)
    }

    /// Reads until `n` unread bytes are in memory or the file ends.
    fn fill_to(&mut self, n: usize) -> io::Result<()> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.base += self.pos as u64;
            self.pos = 0;
        }
        while self.buf.len() < n && !self.eof {
            let old = self.buf.len();
            let want = (n - old).max(READ_CHUNK);
            self.buf.resize(old + want, 0);
            match self.inner.read(&mut self.buf[old..]) {
                Ok(0) => {
                    self.buf.truncate(old);
                    self.eof = true;
                }
                Ok(k) => self.buf.truncate(old + k),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => self.buf.truncate(old),
                Err(e) => {
                    self.buf.truncate(old);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Bytes of the file not consumed yet: known for a regular file, else those in memory
    /// (all there are once [`Self::need`] has said `false`).
    fn left(&self) -> u64 {
        match self.len {
            Some(len) => len.saturating_sub(self.offset()),
            None => self.data().len() as u64,
        }
    }

    /// True when every byte of the file has been consumed.
    fn at_end(&mut self) -> io::Result<bool> {
        Ok(!self.need(1)?)
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
    }
}

/// Where the reader hands each packet record, in file order: the link type, the capture
/// time (µs since the Unix epoch) and the captured bytes.
pub(super) trait Packets {
    /// Takes one packet; `false` stops the read there (no error: the rest is unread).
    fn packet(&mut self, link: i32, ts_us: u64, frame: &[u8]) -> bool;
}

impl Packets for Demux {
    fn packet(&mut self, link: i32, ts_us: u64, frame: &[u8]) -> bool {
        Demux::packet(self, link, ts_us, frame);
        true
    }
}

/// Reads a capture from `inner` (named `file` in errors) into `demux`, a packet at a time
/// as its bytes arrive (a pipe is read as far as its writer has written); returns the
/// error that stopped the read part-way, if one did.
pub(super) fn read<R: Read>(
    inner: R,
    len: Option<u64>,
    file: &Path,
    demux: &mut dyn Packets,
) -> Result<Option<CaptureError>, CaptureError> {
    let mut src = Source::new(inner, len);
    let err = |offset: u64, message: String| CaptureError {
        file: file.to_path_buf(),
        offset,
        message,
    };
    let io_err = |offset: u64, e: io::Error| err(offset, format!("cannot read the file: {e}"));
    let have = src.need(4).map_err(|e| io_err(0, e))?;
    if !have {
        return Err(err(
            0,
            format!("not a pcap or pcapng file (only {} bytes long)", src.left()),
        ));
    }
    let magic_be = u32::from_be_bytes([src.data()[0], src.data()[1], src.data()[2], src.data()[3]]);
    let magic_le = magic_be.swap_bytes();
    let result = if magic_be == SHB_MAGIC {
        read_pcapng(&mut src, demux)
    } else if matches!(magic_le, PCAP_US | PCAP_NS | PCAP_MODIFIED)
        || matches!(magic_be, PCAP_US | PCAP_NS)
    {
        read_pcap(&mut src, demux)
    } else {
        return Err(err(
            0,
            format!("not a pcap or pcapng file (magic 0x{magic_be:08x})"),
        ));
    };
    let error = match result {
        Ok(()) | Err(Stop::Halt) => None,
        Err(Stop::Io(offset, e)) => Some(io_err(offset, e)),
        Err(Stop::Bad(offset, message)) => Some(err(offset, message)),
    };
    if let Some(e) = &error {
        if e.offset == 0 {
            // The file header (pcap) or first section header (pcapng) itself is cut or
            // corrupt: nothing at all could be read.
            return Err(e.clone());
        }
    }
    Ok(error)
}

/// Why a read stopped early: an I/O error, or a cut or corrupt record, at a file offset;
/// or the packets' taker said stop.
enum Stop {
    Io(u64, io::Error),
    Bad(u64, String),
    Halt,
}

/// True while bytes of the file are left to read.
fn more<R: Read>(src: &mut Source<R>) -> Result<bool, Stop> {
    src.at_end()
        .map(|end| !end)
        .map_err(|e| Stop::Io(src.offset(), e))
}

/// Makes `n` bytes available at the current record, or says the file was cut inside it.
fn need_record<R: Read>(src: &mut Source<R>, n: usize, what: &str) -> Result<(), Stop> {
    let at = src.offset();
    match src.need(n) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Stop::Bad(
            at,
            format!(
                "the file ends inside a {what} ({} of {n} bytes): the capture was cut",
                src.left().min(n as u64)
            ),
        )),
        Err(e) => Err(Stop::Io(at, e)),
    }
}

/// pcap: a 24-byte global header, then records `[ts_sec][ts_frac][caplen][origlen][data]`.
fn read_pcap<R: Read>(src: &mut Source<R>, demux: &mut dyn Packets) -> Result<(), Stop> {
    need_record(src, 24, "pcap file header")?;
    let header = match pcap_parser::parse_pcap_header(src.data()) {
        Ok((_, h)) => h,
        Err(_) => {
            return Err(Stop::Bad(0, "unreadable pcap file header".to_string()));
        }
    };
    src.consume(24);
    let big = header.is_bigendian();
    let modified = header.is_modified_format();
    let nanos = header.is_nanosecond_precision();
    // The upper 16 bits may carry an FCS length (pcap spec, "LinkType and additional
    // information"); the link type is the lower 16.
    let link = header.network.0 & 0xffff;
    let hdr_len = if modified { 24 } else { 16 };
    while more(src)? {
        let at = src.offset();
        need_record(src, hdr_len, "packet record header")?;
        let d = src.data();
        let word = |i: usize| {
            let b = [d[i], d[i + 1], d[i + 2], d[i + 3]];
            if big {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        let caplen = word(8) as usize;
        if caplen > MAX_RECORD {
            return Err(Stop::Bad(
                at,
                format!("packet record claims {caplen} bytes: the file is corrupt"),
            ));
        }
        need_record(src, hdr_len + caplen, "packet record")?;
        let d = &src.data()[..hdr_len + caplen];
        let parsed = if modified {
            parse_pcap_frame_modified(d)
        } else if big {
            parse_pcap_frame_be(d)
        } else {
            parse_pcap_frame(d)
        };
        let Ok((_, rec)) = parsed else {
            return Err(Stop::Bad(at, "unreadable packet record".to_string()));
        };
        let frac = u64::from(rec.ts_usec);
        let ts_us = u64::from(rec.ts_sec) * 1_000_000 + if nanos { frac / 1000 } else { frac };
        if !demux.packet(link, ts_us, rec.data) {
            return Err(Stop::Halt);
        }
        src.consume(hdr_len + caplen);
    }
    Ok(())
}

/// One pcapng interface: its link type and how to turn its timestamps into microseconds.
struct Interface {
    link: i32,
    /// Timestamp units per second (if_tsresol; 10^6 by default).
    per_second: u64,
    /// Seconds added to every timestamp (if_tsoffset).
    offset_s: i64,
}

impl Interface {
    /// Microseconds since the Unix epoch of a raw 64-bit timestamp (0 if before it).
    fn ts_us(&self, raw: u64) -> u64 {
        let us = i128::from(raw) * 1_000_000 / i128::from(self.per_second.max(1))
            + i128::from(self.offset_s) * 1_000_000;
        u64::try_from(us.max(0)).unwrap_or(u64::MAX)
    }
}

/// pcapng: blocks `[type u32][len u32][body][len u32]` in the byte order of the section
/// header block that opens each section.
fn read_pcapng<R: Read>(src: &mut Source<R>, demux: &mut dyn Packets) -> Result<(), Stop> {
    let mut section = Section {
        big: false,
        interfaces: Vec::new(),
        last_ts: 0,
    };
    while more(src)? {
        let at = src.offset();
        let (block_type, len) = block_header(src, &mut section.big)?;
        need_record(src, len, "pcapng block")?;
        // Name resolution, statistics, secrets, custom blocks...: nothing to keep.
        if matches!(block_type, SHB_MAGIC | IDB_MAGIC | EPB_MAGIC | SPB_MAGIC) {
            let block = parse_block(&src.data()[..len], block_type, section.big, at)?;
            section.take(block, at, demux)?;
        }
        src.consume(len);
    }
    Ok(())
}

/// The state of the pcapng section being read.
struct Section {
    /// The section's byte order.
    big: bool,
    /// Its interfaces, in the order described.
    interfaces: Vec<Interface>,
    /// Capture time of the last enhanced packet (simple packet blocks carry none).
    last_ts: u64,
}

impl Section {
    /// Takes one parsed block that opened at file offset `at`.
    fn take(&mut self, block: Block<'_>, at: u64, demux: &mut dyn Packets) -> Result<(), Stop> {
        match block {
            Block::SectionHeader(_) => self.interfaces.clear(),
            Block::InterfaceDescription(idb) => self.interfaces.push(Interface {
                link: idb.linktype.0,
                per_second: idb.ts_resolution().unwrap_or(1_000_000),
                offset_s: idb.ts_offset(),
            }),
            Block::EnhancedPacket(epb) => {
                let Some(iface) = self.interfaces.get(epb.if_id as usize) else {
                    return Err(Stop::Bad(
                        at,
                        format!(
                            "packet names interface {} but only {} are described",
                            epb.if_id,
                            self.interfaces.len()
                        ),
                    ));
                };
                let raw = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                self.last_ts = iface.ts_us(raw);
                if !demux.packet(iface.link, self.last_ts, epb.packet_data()) {
                    return Err(Stop::Halt);
                }
            }
            Block::SimplePacket(spb) => {
                let Some(iface) = self.interfaces.first() else {
                    return Err(Stop::Bad(
                        at,
                        "simple packet block before any interface description".to_string(),
                    ));
                };
                if !demux.packet(iface.link, self.last_ts, spb.packet_data()) {
                    return Err(Stop::Halt);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Reads the type and length of the block at the current offset. A section header block
/// sets the byte order (`big`) of everything up to the next one.
fn block_header<R: Read>(src: &mut Source<R>, big: &mut bool) -> Result<(u32, usize), Stop> {
    let at = src.offset();
    need_record(src, 12, "pcapng block header")?;
    let d = src.data();
    let word = |big: bool, i: usize| {
        let b = [d[i], d[i + 1], d[i + 2], d[i + 3]];
        if big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    };
    if word(true, 0) == SHB_MAGIC {
        // The section header's byte-order magic sets the order of everything up to the
        // next section header (the block type itself reads the same either way).
        let bom = word(true, 8);
        *big = if bom == BOM_MAGIC {
            true
        } else if bom == BOM_MAGIC.swap_bytes() {
            false
        } else {
            return Err(Stop::Bad(
                at,
                format!("pcapng section header with a bad byte-order magic 0x{bom:08x}"),
            ));
        };
    }
    let len = word(*big, 4) as usize;
    if len < 12 || len % 4 != 0 || len > MAX_RECORD {
        return Err(Stop::Bad(
            at,
            format!("pcapng block of length {len}: the file is corrupt"),
        ));
    }
    Ok((word(*big, 0), len))
}

/// Parses one whole block (`d`, of type `block_type`) with `pcap-parser`.
fn parse_block(d: &[u8], block_type: u32, big: bool, at: u64) -> Result<Block<'_>, Stop> {
    let parsed = if block_type == SHB_MAGIC {
        parse_sectionheaderblock(d).map(|(r, b)| (r, Block::SectionHeader(b)))
    } else if big {
        parse_block_be(d)
    } else {
        parse_block_le(d)
    };
    parsed.map(|(_, b)| b).map_err(|e| {
        Stop::Bad(
            at,
            format!("unreadable pcapng block (type 0x{block_type:08x}): {e:?}"),
        )
    })
}

/// Opens `path` and reads it into `demux` (see [`read`]).
pub(super) fn read_path(
    path: &Path,
    demux: &mut dyn Packets,
) -> Result<Option<CaptureError>, CaptureError> {
    let open_err = |e: io::Error| CaptureError {
        file: path.to_path_buf(),
        offset: 0,
        message: format!("cannot open: {e}"),
    };
    let file = File::open(path).map_err(open_err)?;
    let meta = file.metadata().map_err(open_err)?;
    if meta.is_dir() {
        return Err(CaptureError {
            file: path.to_path_buf(),
            offset: 0,
            message: "is a directory, not a capture file".to_string(),
        });
    }
    let len = meta.is_file().then_some(meta.len());
    read(file, len, path, demux)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Raw IPv4 + UDP from 192.0.2.1:5000 to 192.0.2.2:`dport` carrying `payload`.
    fn ipv4_udp(dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0x45, 0];
        v.extend_from_slice(&((28 + payload.len()) as u16).to_be_bytes());
        v.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2]);
        v.extend_from_slice(&5000u16.to_be_bytes());
        v.extend_from_slice(&dport.to_be_bytes());
        v.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        v.extend_from_slice(&[0, 0]);
        v.extend_from_slice(payload);
        v
    }

    /// A pcapng block `[type][len][body, padded][len]` in the given byte order.
    fn block(big: bool, ty: u32, body: &[u8]) -> Vec<u8> {
        let w = |v: u32| {
            if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let padded = body.len().div_ceil(4) * 4;
        let len = (12 + padded) as u32;
        let mut v = w(ty).to_vec();
        v.extend_from_slice(&w(len));
        v.extend_from_slice(body);
        v.resize(8 + padded, 0);
        v.extend_from_slice(&w(len));
        v
    }

    fn section(big: bool, ts_us: u64, packet: &[u8]) -> Vec<u8> {
        let w32 = |v: u32| {
            if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let w16 = |v: u16| {
            if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let mut shb = w32(BOM_MAGIC).to_vec();
        shb.extend_from_slice(&w16(1));
        shb.extend_from_slice(&w16(0));
        shb.extend_from_slice(&[0xff; 8]);
        let mut idb = w16(101).to_vec();
        idb.extend_from_slice(&w16(0));
        idb.extend_from_slice(&w32(65535));
        let mut epb = w32(0).to_vec();
        epb.extend_from_slice(&w32((ts_us >> 32) as u32));
        epb.extend_from_slice(&w32(ts_us as u32));
        epb.extend_from_slice(&w32(packet.len() as u32));
        epb.extend_from_slice(&w32(packet.len() as u32));
        epb.extend_from_slice(packet);
        let mut v = block(big, SHB_MAGIC, &shb);
        v.extend(block(big, IDB_MAGIC, &idb));
        // A block this reader does not need (interface statistics, garbage body): skipped.
        v.extend(block(big, 5, &[0xee; 10]));
        v.extend(block(big, EPB_MAGIC, &epb));
        v
    }

    #[test]
    fn pcapng_sections_of_both_byte_orders_and_skipped_blocks() {
        let mut file = section(false, 1_000_001, &ipv4_udp(4747, b"one"));
        file.extend(section(true, 2_000_002, &ipv4_udp(4747, b"two")));
        file.extend(section(false, 3_000_003, &ipv4_udp(53, b"dns")));
        let (r, stats) = read(&file[..], None, Path::new("mem"), 4747).unwrap();
        assert_eq!(r.error, None);
        assert_eq!((r.packets, r.skipped), (3, 1));
        let got: Vec<_> = r
            .datagrams
            .iter()
            .map(|d| (d.ts_us, d.payload.as_slice(), d.to_server))
            .collect();
        assert_eq!(
            got,
            [
                (1_000_001, &b"one"[..], true),
                (2_000_002, &b"two"[..], true)
            ]
        );
        assert_eq!(stats.segments, 0);
    }

    #[test]
    fn pcap_link_type_with_fcs_bits_and_unknown_links() {
        let packet = ipv4_udp(4747, b"x");
        let mut file = Vec::new();
        file.extend_from_slice(&PCAP_US.to_le_bytes());
        file.extend_from_slice(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0]);
        // Link type 101 with "FCS present, 4 bytes" in the upper bits.
        file.extend_from_slice(&(101u32 | 0x1400_0000).to_le_bytes());
        for w in [7u32, 8, packet.len() as u32, packet.len() as u32] {
            file.extend_from_slice(&w.to_le_bytes());
        }
        file.extend_from_slice(&packet);
        let (r, _) = read(&file[..], None, Path::new("mem"), 4747).unwrap();
        assert_eq!(r.datagrams.len(), 1);
        assert_eq!(r.datagrams[0].ts_us, 7_000_008);

        file[20..24].copy_from_slice(&147u32.to_le_bytes());
        let (r, stats) = read(&file[..], None, Path::new("mem"), 4747).unwrap();
        assert_eq!((r.packets, r.skipped), (1, 1));
        assert_eq!(stats.unsupported_links, [(147, 1)]);
    }

    #[test]
    fn corrupt_and_short_files() {
        let err = read(&b"\x0a\x0d\x0d\x0a\x00"[..], None, Path::new("f"), 1).unwrap_err();
        assert_eq!(err.offset, 0);
        assert!(err.message.contains("cut"), "{err}");
        let err = read(&b"ab"[..], None, Path::new("f"), 1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "f: at byte 0: not a pcap or pcapng file (only 2 bytes long)"
        );
        // A pcap record claiming 1 GiB: corrupt, reported at its offset, nothing allocated.
        let mut file = PCAP_US.to_le_bytes().to_vec();
        file.extend_from_slice(&[
            2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 101, 0, 0, 0,
        ]);
        file.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x40, 0, 0, 0, 0x40]);
        let (r, _) = read(&file[..], None, Path::new("f"), 1).unwrap();
        let e = r.error.unwrap();
        assert_eq!(e.offset, 24);
        assert!(e.message.contains("corrupt"), "{e}");
    }

    /// Reads `file` keeping the traffic of `port`.
    fn read(
        file: &[u8],
        len: Option<u64>,
        name: &Path,
        port: u16,
    ) -> Result<
        (
            crate::tools::capture::CaptureRead,
            crate::tools::capture::CaptureStats,
        ),
        CaptureError,
    > {
        let mut demux = Demux::new(&[port]);
        let error = super::read(file, len, name, &mut demux)?;
        Ok(demux.finish(error))
    }

    proptest::proptest! {
        /// No file makes the reader panic: anything after a pcap header or a pcapng section
        /// header, or no header at all.
        #[test]
        fn any_bytes_read_without_panic(
            head in 0usize..3,
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
        ) {
            let mut file = match head {
                0 => {
                    let mut v = PCAP_US.to_le_bytes().to_vec();
                    v.extend_from_slice(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0]);
                    v.extend_from_slice(&1u32.to_le_bytes());
                    v
                }
                1 => section(false, 1, &ipv4_udp(4747, b"x")),
                _ => Vec::new(),
            };
            file.extend_from_slice(&tail);
            let _ = read(&file[..], None, Path::new("p"), 4747);
        }
    }
}
