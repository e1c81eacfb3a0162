//! Files that are cut in the middle or are not captures at all: what came before the cut is
//! kept and the offset named; a file that is not a capture is refused by name.

use super::{client_stream, decode, expect_lines, frames, pcap, pcapng, tmp, write, Link, PORT};
use rendezvous::tools::capture::read_capture;

#[test]
fn a_cut_capture_keeps_what_came_before_and_names_the_offset() {
    let dir = tmp();
    let (bytes, offsets) = pcap(false, false, 1, &frames(Link::Ethernet, false, false));
    // Cut inside record 6 (the server's status answer), after its header.
    let cut_at = offsets[6];
    let cut = &bytes[..cut_at + 16 + 10];
    let path = write(dir.path(), "cut.pcap", cut);
    let read = read_capture(&path, PORT).expect("a cut capture still reads");
    let err = read.error.clone().expect("the cut is reported");
    assert_eq!(err.offset, cut_at as u64);
    assert_eq!(err.file, path);
    assert!(err.message.contains("cut"), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("{}: at byte {cut_at}: ", path.display())),
        "{err}"
    );
    assert_eq!(read.packets, 6);
    assert_eq!(read.datagrams.len(), 1);
    assert_eq!(read.flows.len(), 1);
    assert_eq!(read.flows[0].client_data, client_stream());
    assert!(read.flows[0].server_data.is_empty());

    let done = decode(&path, PORT, false);
    assert_eq!(done.status.code(), Some(1), "{done:?}");
    expect_lines(&done.stdout, &["lookup(5)"], 1);
    expect_lines(&done.stdout, &["update(1) user=\"alice\""], 1);
    let wanted = format!("error: {}: at byte {cut_at}: ", path.display());
    assert!(
        done.stderr.iter().any(|l| l.starts_with(&wanted)),
        "no {wanted:?} in {:?}",
        done.stderr
    );

    // A pcapng cut inside its last block, and a pcap cut inside a record header.
    let ng = pcapng(false, false, 1, &frames(Link::Ethernet, false, false));
    let path = write(dir.path(), "cut.pcapng", &ng[..ng.len() - 3]);
    let read = read_capture(&path, PORT).expect("a cut pcapng still reads");
    assert_eq!(read.packets, 7);
    assert!(read.error.expect("cut").offset > 0);
    let path = write(dir.path(), "cut-header.pcap", &bytes[..offsets[2] + 5]);
    let read = read_capture(&path, PORT).expect("read");
    assert_eq!(read.packets, 2);
    assert_eq!(read.error.expect("cut").offset, offsets[2] as u64);
}

#[test]
fn a_file_that_is_not_a_capture_is_refused_by_name() {
    let dir = tmp();
    let path = write(dir.path(), "notes.txt", b"hello, this is text\n");
    let err = read_capture(&path, PORT).expect_err("text is not a capture");
    assert_eq!(err.offset, 0);
    assert!(
        err.message
            .contains("not a pcap or pcapng file (magic 0x68656c6c)"),
        "{err}"
    );
    let done = decode(&path, PORT, false);
    assert_eq!(done.status.code(), Some(1));
    assert!(done.stdout.is_empty());
    let text = done.stderr.join("\n");
    assert!(
        text.contains(&path.display().to_string()) && text.contains("not a pcap or pcapng"),
        "{text}"
    );

    let empty = write(dir.path(), "empty.pcap", b"");
    let err = read_capture(&empty, PORT).expect_err("empty");
    assert!(err.message.contains("not a pcap or pcapng"), "{err}");

    let missing = dir.path().join("missing.pcap");
    let done = decode(&missing, PORT, false);
    assert_eq!(done.status.code(), Some(1));
    let text = done.stderr.join("\n");
    assert!(
        text.contains(&missing.display().to_string()) && text.contains("cannot open"),
        "{text}"
    );
}
