//! The public fixtures (`rendezvous::wire::fixtures`) read with the public codecs.

use rendezvous::wire::tcp::{command_len, hello_len, ClientCommand, Hello, Role, ServerCommand};

/// The public fixtures (`rendezvous::wire::fixtures`), read as any reader of the protocol
/// reads them: every datagram, hello, command and answer parses whole with the public
/// codecs, under the name its `type`, `command` or `piece` fields give.
#[test]
fn public_fixtures_read_with_the_public_codecs() {
    use rendezvous::wire::fixtures::{self, Frame};
    use rendezvous::wire::tcp::answer::AnswerReader;
    use rendezvous::wire::tcp::command_name;
    use rendezvous::wire::udp::Payload;
    use rendezvous::wire::Root;
    let mut seen = 0;
    for f in fixtures::all() {
        let bytes = f.bytes();
        match f.frame {
            Frame::Datagram => {
                let root = Root::parse(&bytes).expect(f.name);
                assert!(
                    Payload::parse(root.packet_type, root.payload).is_ok(),
                    "{}",
                    f.name
                );
                assert_eq!(f.field("type"), Some(root.packet_type.name()), "{}", f.name);
            }
            Frame::Hello => {
                assert_eq!(hello_len(&bytes), Ok(Some(bytes.len())), "{}", f.name);
                assert!(Hello::parse(&bytes).is_ok(), "{}", f.name);
            }
            Frame::Command(role) => {
                assert_eq!(
                    command_len(role, &bytes),
                    Ok(Some(bytes.len())),
                    "{}",
                    f.name
                );
                assert_eq!(
                    f.field("command"),
                    command_name(role, bytes[0]),
                    "{}",
                    f.name
                );
                let parsed = match role {
                    Role::Client => ClientCommand::parse(&bytes).map(|_| ()),
                    Role::Server => ServerCommand::parse(&bytes).map(|_| ()),
                };
                assert_eq!(parsed, Ok(()), "{}", f.name);
            }
            Frame::Answer(asked) => {
                let mut reader = AnswerReader::new();
                for a in asked {
                    reader.ask(*a, ()).unwrap();
                }
                let (mut at, mut names) = (0, Vec::new());
                while let Some(p) = reader.read(&bytes[at..]).expect(f.name) {
                    names.push(p.piece.kind().name());
                    at += p.len;
                }
                assert_eq!(at, bytes.len(), "{}", f.name);
                let want: Vec<&str> = f
                    .fields
                    .iter()
                    .filter(|(k, _)| *k == "piece")
                    .map(|(_, v)| *v)
                    .collect();
                assert_eq!(names, want, "{}", f.name);
            }
        }
        seen += 1;
    }
    assert!(seen >= 60, "{seen} fixtures");
}
