--[[
rendezvous.lua: a Wireshark / tshark dissector for the `rendezvous` protocol, both planes.

What it decodes (byte layouts: docs/PROTOCOL.md; code: src/wire/):
  * UDP: the Root packet, plain and shifted (params bits, shift_len and the junk of every
    shift, type, sig_len, signature, timestamp) and the payload of every type 0-9: keepalive,
    OK, register (with the certificate's SHA-256 fingerprint computed here, and the
    certificate itself handed to Wireshark's X.509 dissector), server event (punch request),
    relayed event, lookup, lookup answer, error, fetch, cookie.
  * TCP: the stream reassembled across segments (pinfo.desegment_offset/desegment_len), the
    hello (role, name), the opener's commands of both roles (client 1, 2, 5, 6; server 1-6,
    10-24, length-prefixed ones included: node-list frames, DirRecord, DirRequest, Forward,
    AuthProof, Reconcile, DirWant, NodeSync) and the acceptor's answers (counts, records,
    UpdateClock, the status frame 7, the Status text, the cursor answer, node-list hash and
    diff (to a NodeList or a NodeSync), directory records and the closing count (to a
    DirRequest or a DirWant), JournalSince answers, nonces, Reconcile answers and busy).
    Reconcile messages (negentropy v1) are shown as opaque bytes: set, length, version byte.
    Direction: a segment sent to the configured port comes from the opener (the side that
    connected and drives the connection); one sent from it is an answer. When neither or
    both ports are the configured one ("Decode As" on another port), the side that sent the
    connection's first bytes (its hello) is the opener.
    Answers are framed as the answer codec frames them (src/wire/tcp/answer/): by what the
    opener asked, in order, so the count that starts a ListAll or AskForUpdate answer (the
    one answer without a byte of its own) is read as a count whatever its value, and an
    answer nobody asked for is malformed. On a connection whose hello was not captured,
    an answer is framed by its first byte: a count must then start with 0 (below
    16 777 216); every other answer starts with its own byte.
  * Malformed input (a length that runs past the end, an unknown type or command, a wrong
    address family, a bad status, text that is not UTF-8, bytes after the last field...)
    adds the expert info `rendezvous.malformed` (group Malformed, severity Error), so
    `tshark -Y "_ws.expert.severity == error"` (or the GUI's expert view) finds it. Bytes
    missing only because the capture was cut short (snap length, an ICMP error quoting a
    datagram) are reported as a truncated capture, not as malformed.

How to load:
  * tshark, once:   tshark -X lua_script:tools/rendezvous.lua -r capture.pcap
                    (other port: add -o rendezvous.port:5000, or
                     -d udp.port==5000,rendezvous -d tcp.port==5000,rendezvous;
                     not both on one port: moving the preference away from a port
                     also drops a Decode As entry on it)
  * Wireshark, always: copy this file into the personal Lua plugins folder and restart
    (or Analyze > Reload Lua Plugins): ~/.local/lib/wireshark/plugins/ on Linux and macOS
    (Wireshark 4.x; Help > About Wireshark > Folders shows "Personal Lua Plugins"),
    %APPDATA%\Wireshark\plugins\ on Windows.
  * Preferences (Edit > Preferences > Protocols > RENDEZVOUS, or -o NAME:VALUE):
      rendezvous.port         UDP and TCP port to decode (default 4747; 0 = Decode As only)
      rendezvous.decode_cert  hand certificates to Wireshark's X.509 dissector (default on)
  * "Decode As...": the protocol is offered in the udp.port and tcp.port tables.

Display filter fields: every field below is declared with a description (View > Internals >
Supported Protocols; or, with the file in the plugins folder,
`tshark -G fields | grep rendezvous`). Fingerprints are shown as 64 lowercase hex digits;
`rendezvous.fingerprint` matches any fingerprint in a packet.

Written for Wireshark 4.x (Lua 5.2 and later); no bitwise operators are used directly.
--]]

local rdv = Proto("rendezvous", "Rendezvous")

-- ---------------------------------------------------------------------------------------
-- Constants (docs/PROTOCOL.md)
-- ---------------------------------------------------------------------------------------

local DEFAULT_PORT = 4747
local MAX_DATAGRAM = 1400 -- bytes; larger datagrams are answered 413
local MAX_EVENT = 1200 -- largest relayed event, bytes
local NAME_LEN = 256 -- fixed text field of the TCP plane
local PHONE_LEN = 20
local HELLO_LEN = 1 + NAME_LEN
local CONTACT_LEN = 2 * NAME_LEN + PHONE_LEN -- 532
local MAX_VAR_BODY = 4096 -- body of frames 16-18, 21 and 23
local MAX_NODES = 4096 -- entries of a node list, and ids a NodeSync wants
local MAX_RECONCILE_BODY = 60000 -- set byte and message of a Reconcile (22), both ways
local ID_LEN = 32 -- a DirWant's and a NodeSync's ids
local NEGENTROPY_V1 = 0x61 -- first byte of a negentropy protocol version 1 message
local MAX_STATUS_TEXT = 1048576 -- a Status answer longer than this is implausible
local MAX_SIGNED_LEN = 1388 -- signature + payload of a directory registration record
local ROLE_SERVER, ROLE_CLIENT = 1, 2

local TYPE_NAMES = {
    [0] = "Keepalive", [1] = "OK", [2] = "Register", [3] = "Server event", [4] = "Relay",
    [5] = "Lookup", [6] = "Lookup answer", [7] = "Error", [8] = "Fetch", [9] = "Cookie",
}
local STATUS_NAMES = {
    [200] = "OK", [400] = "Bad request (malformed)", [401] = "Bad signature or certificate",
    [403] = "Not allowed", [404] = "Unknown", [408] = "Hello timeout",
    [409] = "Stale, replayed or implausible", [413] = "Too large", [429] = "Rate limited",
    [503] = "Full or unavailable",
}
local LOOKUP_STATUS = { [0] = "online", [1] = "known but offline", [2] = "unknown" }
local FAMILY_NAMES = { [0] = "none", [4] = "IPv4", [6] = "IPv6" }
local ROLE_NAMES = { [1] = "server", [2] = "client" }
local HEALTH_NAMES = { [1] = "ok", [2] = "degraded", [3] = "draining" }
local EVENT_CODES = { [1] = "punch request" }
local DIR_KINDS = { [1] = "registration", [2] = "refresh", [3] = "expiry" }
local FORWARD_KINDS = { [1] = "punch request", [2] = "relayed event" }
local RECONCILE_SETS = { [1] = "contacts", [2] = "directory", [3] = "node list" }
local DIRECTIONS = { [1] = "opener -> acceptor (commands)", [2] = "acceptor -> opener (answers)" }

-- Command names by role (docs/PROTOCOL.md §8.3, §8.4; 1-4 from the design notes, 5 and up the project's).
local CLIENT_COMMANDS = {
    [1] = "Update", [2] = "ListAll", [5] = "Barrier", [6] = "Status", [20] = "AuthChallenge",
    [21] = "AuthProof",
}
local SERVER_COMMANDS = {
    [1] = "Update", [2] = "HeartBeat", [3] = "UpdateClock", [4] = "AskForUpdate",
    [5] = "Barrier", [6] = "Status", [10] = "NodeListHash", [11] = "NodeList",
    [12] = "NodeListDiff", [13] = "JournalUpdate", [14] = "CursorQuery", [15] = "JournalMark",
    [16] = "DirRecord", [17] = "DirRequest", [18] = "Forward", [19] = "JournalSince",
    [20] = "AuthChallenge", [21] = "AuthProof", [22] = "Reconcile", [23] = "DirWant",
    [24] = "NodeSync",
}
-- Fixed frame lengths (command byte included) by role; the others carry their own lengths.
local CLIENT_FRAME_LEN = { [1] = 1 + CONTACT_LEN, [2] = 1, [5] = 1, [6] = 1, [20] = 1 }
local SERVER_FRAME_LEN = {
    [1] = 1 + 4 + CONTACT_LEN, [2] = 6, [3] = 5, [4] = 1, [5] = 1, [6] = 1,
    [13] = 1 + 8 + 4 + CONTACT_LEN, [14] = 9, [15] = 9, [19] = 21, [20] = 1,
}
local ANSWER_NAMES = {
    [0] = "Count", [1] = "Record", [3] = "UpdateClock", [6] = "Status text",
    [7] = "Status frame", [10] = "NodeListHash", [12] = "NodeListDiff",
    [13] = "JournalUpdate", [14] = "Cursor", [16] = "DirRecord", [17] = "Directory end",
    [19] = "JournalSince count", [20] = "Nonce", [22] = "Reconcile",
}

-- ---------------------------------------------------------------------------------------
-- Fields
-- ---------------------------------------------------------------------------------------

--- A UTF-8 text field with a description: Wireshark 4.2 and later take a display argument
--- (base.UNICODE) before the description; 4.0 takes the description third.
local function text_field(abbr, name, desc)
    if base.UNICODE ~= nil then
        return ProtoField.string(abbr, name, base.UNICODE, desc)
    end
    return ProtoField.string(abbr, name, desc)
end

local f = {
    -- Root packet (UDP)
    params = ProtoField.uint8("rendezvous.params", "Params", base.HEX, nil, nil,
        "Root params byte: 0x01 sender is a server, 0x02 receiver is a server, 0x04 shifted layout"),
    from_server = ProtoField.bool("rendezvous.params.from_server", "Sender is a server", 8, nil,
        0x01, "params bit 0x01: set on every server packet; such packets are never answered"),
    to_server = ProtoField.bool("rendezvous.params.to_server", "Receiver is a server", 8, nil,
        0x02, "params bit 0x02: set by clients"),
    shifted = ProtoField.bool("rendezvous.params.shifted", "Shifted layout", 8, nil, 0x04,
        "params bit 0x04: shift_len junk bytes follow the type, sig_len, signature and timestamp"),
    reserved = ProtoField.uint8("rendezvous.params.reserved", "Reserved bits", base.HEX, nil,
        0xF8, "params bits 0xF8: must be zero"),
    shift_len = ProtoField.uint8("rendezvous.shift_len", "Shift length", base.DEC, nil, nil,
        "Shifted layout: junk bytes in each of the four shifts (0-255)"),
    junk = ProtoField.bytes("rendezvous.junk", "Junk (shift)", base.NONE,
        "Shifted layout: shift_len arbitrary bytes the receiver skips"),
    type = ProtoField.uint8("rendezvous.type", "Type", base.DEC, TYPE_NAMES, nil,
        "Root packet type: 0-9 defined, 10-255 unknown (answered 400)"),
    sig_len = ProtoField.uint16("rendezvous.sig_len", "Signature length", base.DEC, nil, nil,
        "Length of the signature in bytes (u16)"),
    signature = ProtoField.bytes("rendezvous.signature", "Signature", base.NONE,
        "Signature over timestamp (8 bytes) || payload: Ed25519, ECDSA P-256 (DER) or "
        .. "RSA PKCS#1 v1.5 SHA-256; AuthProof: Ed25519 over the nonce"),
    timestamp = ProtoField.uint64("rendezvous.timestamp", "Timestamp", base.DEC, nil, nil,
        "Unix time in seconds, UTC (0 in errors)"),
    padding = ProtoField.bytes("rendezvous.padding", "Padding", base.NONE,
        "Keepalive payload: padding the server ignores (lets a 404 fit)"),
    keepalive = ProtoField.uint16("rendezvous.keepalive", "Keepalive interval (s)", base.DEC,
        nil, nil, "OK: advised keepalive interval, seconds"),
    epoch = ProtoField.uint32("rendezvous.epoch", "Boot epoch", base.HEX, nil, nil,
        "OK: random per server start; a change means the server restarted"),
    family = ProtoField.uint8("rendezvous.family", "Address family", base.DEC, FAMILY_NAMES, nil,
        "Address family: 4 (IPv4), 6 (IPv6), 0 (no address)"),
    addr = ProtoField.ipv4("rendezvous.addr", "Address (IPv4)",
        "IPv4 address in a payload (OK, punch request, lookup answer, directory record, forward)"),
    addr6 = ProtoField.ipv6("rendezvous.addr6", "Address (IPv6)",
        "IPv6 address in a payload (OK, punch request, lookup answer, directory record, forward)"),
    addr_pad = ProtoField.bytes("rendezvous.addr_pad", "Address padding", base.NONE,
        "Fixed 16-byte address field of an IPv4 address: 12 bytes that must be zero"),
    port = ProtoField.uint16("rendezvous.port", "Port", base.DEC, nil, nil,
        "UDP port in a payload"),
    cert_len = ProtoField.uint16("rendezvous.cert_len", "Certificate length", base.DEC, nil, nil,
        "Register: length of the DER certificate, 1-65535"),
    cert = ProtoField.bytes("rendezvous.cert", "Certificate (DER)", base.NONE,
        "Register: the client's self-signed X.509 certificate, DER"),
    cert_fp = ProtoField.bytes("rendezvous.cert.fingerprint", "Certificate fingerprint",
        base.NONE, "SHA-256 of the certificate's DER bytes, computed by the dissector"),
    cookie = ProtoField.bytes("rendezvous.cookie", "Cookie", base.NONE,
        "Address-check cookie (16 bytes): sent in type 9, appended to a registration"),
    register_flags = ProtoField.uint8("rendezvous.register_flags", "Register flags", base.HEX,
        nil, nil, "Register: 0x01 unlisted (binds the source for the client's own requests; "
        .. "the directory's address does not move)"),
    event_code = ProtoField.uint8("rendezvous.event_code", "Event code", base.DEC, EVENT_CODES,
        nil, "Server event code: 1 punch request"),
    peer = ProtoField.bytes("rendezvous.peer", "Peer fingerprint", base.NONE,
        "Punch request: the fingerprint of the peer about to send to you"),
    destination = ProtoField.bytes("rendezvous.destination", "Destination fingerprint",
        base.NONE, "Relay from a client: who the event is for"),
    source = ProtoField.bytes("rendezvous.source", "Source fingerprint", base.NONE,
        "Relay from the server, Forward: who sent the event (or asked for the punch)"),
    event_len = ProtoField.uint16("rendezvous.event_len", "Event length", base.DEC, nil, nil,
        "Length of a relayed event, 1-1200 bytes"),
    event = ProtoField.bytes("rendezvous.event", "Event", base.NONE,
        "Relayed event: opaque bytes"),
    event_text = text_field("rendezvous.event_text", "Event text",
        "Relayed event shown as text when it is printable UTF-8"),
    target = ProtoField.bytes("rendezvous.target", "Target fingerprint", base.NONE,
        "Lookup and lookup answer, Forward: the fingerprint looked up (or forwarded to)"),
    lookup_status = ProtoField.uint8("rendezvous.lookup.status", "Lookup status", base.DEC,
        LOOKUP_STATUS, nil, "Lookup answer: 0 online, 1 known but offline, 2 unknown"),
    age = ProtoField.uint32("rendezvous.age", "Age (s)", base.DEC, nil, nil,
        "Lookup answer: seconds since the target was last seen"),
    home_len = ProtoField.uint8("rendezvous.home_len", "Home alias length", base.DEC, nil, nil,
        "Length of the home alias, 0-255"),
    home = text_field("rendezvous.home", "Home alias",
        "Alias of the server the client is registered at"),
    status = ProtoField.uint16("rendezvous.status", "Status", base.DEC, STATUS_NAMES, nil,
        "HTTP-like status: UDP error (type 7) or TCP status frame (byte 7)"),
    request = ProtoField.uint8("rendezvous.request", "Request", base.DEC, nil, nil,
        "The refused or answered request: UDP packet type or TCP command byte (0 hello, 0xFF unreadable)"),
    detail_len = ProtoField.uint8("rendezvous.detail_len", "Detail length", base.DEC, nil, nil,
        "Length of the detail text, 0-255"),
    detail = text_field("rendezvous.detail", "Detail",
        "Human-readable reason of an error or status (not a contract)"),
    fingerprint = ProtoField.bytes("rendezvous.fingerprint", "Fingerprint", base.NONE,
        "Any fingerprint in the packet (hidden; for filters)"),
    data = ProtoField.bytes("rendezvous.data", "Undecoded bytes", base.NONE,
        "Bytes that do not fit the layout (trailing, or after a malformed field)"),

    -- TCP plane
    direction = ProtoField.uint8("rendezvous.direction", "Direction", base.DEC, DIRECTIONS, nil,
        "TCP: 1 opener -> acceptor (hello and commands), 2 acceptor -> opener (answers)"),
    role = ProtoField.uint8("rendezvous.hello.role", "Role", base.DEC, ROLE_NAMES, nil,
        "Hello: 1 server (federated peer), 2 client"),
    hello_name = text_field("rendezvous.hello.name", "Name",
        "Hello: the opener's name, 256 bytes NUL-padded UTF-8"),
    command = ProtoField.uint8("rendezvous.command", "Command", base.DEC, nil, nil,
        "TCP command byte from the opener (meaning depends on the hello's role)"),
    answer = ProtoField.uint8("rendezvous.answer", "Answer", base.DEC, ANSWER_NAMES, nil,
        "TCP answer from the acceptor: its first byte (0 = the count of a ListAll or AskForUpdate answer)"),
    username = text_field("rendezvous.username", "Username",
        "Contact owner, 256 bytes NUL-padded UTF-8"),
    contact = text_field("rendezvous.contact", "Contact name",
        "Contact name, 256 bytes NUL-padded UTF-8"),
    phone = text_field("rendezvous.phone", "Phone",
        "Phone number, 20 bytes NUL-padded UTF-8"),
    clock = ProtoField.uint32("rendezvous.clock", "Lamport clock", base.DEC, nil, nil,
        "Lamport clock (server Update, HeartBeat, UpdateClock, JournalUpdate)"),
    health = ProtoField.uint8("rendezvous.health", "Health", base.DEC, HEALTH_NAMES, nil,
        "HeartBeat: 1 ok, 2 degraded, 3 draining"),
    count = ProtoField.uint32("rendezvous.count", "Count", base.DEC, nil, nil,
        "Number of records that follow (ListAll, AskForUpdate, JournalSince, directory end)"),
    status_text_len = ProtoField.uint32("rendezvous.status_text_len", "Status text length",
        base.DEC, nil, nil, "Status (6) answer: length of the text"),
    status_text = text_field("rendezvous.status_text", "Status text",
        "Status (6) answer: key=value lines"),
    line = ProtoField.uint64("rendezvous.journal.line", "Journal line", base.DEC, nil, nil,
        "Line number in the opener's journal (JournalUpdate, JournalMark, cursor answer)"),
    journal_id = ProtoField.uint64("rendezvous.journal.id", "Journal id", base.HEX, nil, nil,
        "Random 64-bit id of a journal (CursorQuery, JournalSince)"),
    since = ProtoField.uint64("rendezvous.journal.since", "Since line", base.DEC, nil, nil,
        "JournalSince: the last line the asker holds"),
    limit = ProtoField.uint32("rendezvous.journal.limit", "Limit", base.DEC, nil, nil,
        "JournalSince: most lines wanted (1-4096)"),
    hash_len = ProtoField.uint8("rendezvous.nodelist.hash_len", "Hash length", base.DEC, nil,
        nil, "NodeListHash: length of the hash (64)"),
    hash = ProtoField.bytes("rendezvous.nodelist.hash", "Node list hash", base.NONE,
        "NodeListHash: SHA-512 of the canonical node list"),
    node_count = ProtoField.uint32("rendezvous.nodelist.count", "Entries", base.DEC, nil, nil,
        "NodeList / NodeListDiff / NodeSync: number of entries (at most 4096)"),
    node_want = ProtoField.uint16("rendezvous.nodelist.want", "Ids wanted", base.DEC, nil, nil,
        "NodeSync: number of entry ids wanted (at most 4096)"),
    node_want_id = ProtoField.bytes("rendezvous.nodelist.want_id", "Wanted entry id", base.NONE,
        "NodeSync: the id of an entry the opener lacks (uid 16, version u64, 8 bytes of SHA-256)"),
    node = ProtoField.none("rendezvous.node", "Node entry",
        "One node-list entry: uid, version, alias, location, key"),
    node_uid = ProtoField.bytes("rendezvous.node.uid", "Uid", base.NONE,
        "Node uid: first 16 bytes of SHA-256 of its public key"),
    node_version = ProtoField.uint64("rendezvous.node.version", "Version", base.DEC, nil, nil,
        "Node entry version (Unix time of the node's start)"),
    node_alias_len = ProtoField.uint8("rendezvous.node.alias_len", "Alias length", base.DEC,
        nil, nil, "Length of the node's alias"),
    node_alias = text_field("rendezvous.node.alias", "Alias",
        "The node's alias (UTF-8)"),
    node_location_len = ProtoField.uint8("rendezvous.node.location_len", "Location length",
        base.DEC, nil, nil, "Length of the node's location"),
    node_location = text_field("rendezvous.node.location", "Location",
        "Where the node listens, HOST:PORT"),
    node_key_len = ProtoField.uint8("rendezvous.node.key_len", "Key length", base.DEC, nil, nil,
        "Length of the node's public key (1-255)"),
    node_key = ProtoField.bytes("rendezvous.node.key", "Public key", base.NONE,
        "The node's public key, raw (Ed25519: 32 bytes)"),
    body_len = ProtoField.uint16("rendezvous.len", "Body length", base.DEC, nil, nil,
        "Length of the body of a DirRecord, DirRequest, Forward, AuthProof or DirWant frame (at "
        .. "most 4096), or of a Reconcile frame (set and message, at most 60000)"),
    dir_kind = ProtoField.uint8("rendezvous.dir.kind", "Record kind", base.DEC, DIR_KINDS, nil,
        "DirRecord: 1 registration, 2 refresh, 3 expiry"),
    hops = ProtoField.uint8("rendezvous.hops", "Hops", base.DEC, nil, nil,
        "DirRecord / Forward: servers passed (records at most 16, forwards at most 8)"),
    dir_fp = ProtoField.bytes("rendezvous.dir.fingerprint", "Client fingerprint", base.NONE,
        "DirRecord: the client the record is about"),
    dir_home_uid = ProtoField.bytes("rendezvous.dir.home_uid", "Home node uid", base.NONE,
        "DirRecord: the home server's node uid, its identity in federation (16 bytes)"),
    dir_timestamp = ProtoField.uint64("rendezvous.dir.timestamp", "Registration timestamp",
        base.DEC, nil, nil, "DirRecord: Unix seconds of the signed registration"),
    age_ms = ProtoField.uint32("rendezvous.dir.age_ms", "Age (ms)", base.DEC, nil, nil,
        "DirRecord: ms since the home server last heard from the client"),
    payload_len = ProtoField.uint16("rendezvous.dir.payload_len", "Registration payload length",
        base.DEC, nil, nil, "DirRecord: length of the client's type-2 payload that follows"),
    forward_kind = ProtoField.uint8("rendezvous.forward.kind", "Forward kind", base.DEC,
        FORWARD_KINDS, nil, "Forward: 1 punch request, 2 relayed event"),
    forward_id = ProtoField.uint64("rendezvous.forward.id", "Forward id", base.HEX, nil, nil,
        "Forward: id for duplicate suppression"),
    nonce = ProtoField.bytes("rendezvous.nonce", "Nonce", base.NONE,
        "AuthChallenge answer: 32 bytes to sign"),
    dir_want_count = ProtoField.uint16("rendezvous.dir.want_count", "Ids wanted", base.DEC, nil,
        nil, "DirWant: number of directory entry ids (len / 32, at most 128)"),
    dir_want_id = ProtoField.bytes("rendezvous.dir.want_id", "Wanted entry id", base.NONE,
        "DirWant: the id of a directory entry wanted (32 bytes, SHA-256)"),
    reconcile_set = ProtoField.uint8("rendezvous.reconcile.set", "Set", base.DEC, RECONCILE_SETS,
        nil, "Reconcile: the set reconciled: 1 contacts, 2 directory, 3 node list"),
    reconcile_message_len = ProtoField.uint16("rendezvous.reconcile.message_len",
        "Message length", base.DEC, nil, nil,
        "Reconcile: length of the negentropy message (len - 1; 0 in a busy answer)"),
    reconcile_message = ProtoField.bytes("rendezvous.reconcile.message", "Message", base.NONE,
        "Reconcile: the negentropy protocol message, opaque"),
    reconcile_version = ProtoField.uint8("rendezvous.reconcile.version", "Negentropy version",
        base.HEX, { [NEGENTROPY_V1] = "negentropy v1" }, nil,
        "Reconcile: the message's first byte, its protocol version (0x61: version 1)"),
    reconcile_busy = ProtoField.bool("rendezvous.reconcile.busy", "Busy", base.NONE, nil, nil,
        "Reconcile answer of the set byte alone: the acceptor is reconciling that set with "
        .. "another server (ask again later)"),
    auth_sig_len = ProtoField.uint8("rendezvous.auth.sig_len", "Signature length", base.DEC, nil,
        nil, "AuthProof: length of the Ed25519 signature (u8)"),
}
rdv.fields = f

local ef_malformed = ProtoExpert.new("rendezvous.malformed", "Malformed rendezvous packet",
    expert.group.MALFORMED, expert.severity.ERROR)
local ef_refused = ProtoExpert.new("rendezvous.refused", "Request refused",
    expert.group.RESPONSE_CODE, expert.severity.NOTE)
local ef_truncated = ProtoExpert.new("rendezvous.truncated", "Capture cut short",
    expert.group.UNDECODED, expert.severity.NOTE)
local ef_guess = ProtoExpert.new("rendezvous.guess", "Assumption made while decoding",
    expert.group.ASSUMPTION, expert.severity.WARN)
rdv.experts = { ef_malformed, ef_refused, ef_truncated, ef_guess }

rdv.prefs.port = Pref.uint("UDP and TCP port", DEFAULT_PORT,
    "The port the rendezvous server listens on (UDP and TCP); 0 registers none (use Decode As)")
rdv.prefs.decode_cert = Pref.bool("Decode certificates", true,
    "Hand registered certificates to Wireshark's X.509 (PKIX) dissector")

local f_tcp_stream = Field.new("tcp.stream")

-- ---------------------------------------------------------------------------------------
-- Small helpers: bit operations, SHA-256, UTF-8
-- ---------------------------------------------------------------------------------------

local M32 = 4294967296
local band, bxor, bnot, rshift, rrot
if bit32 then
    band, bxor, bnot, rshift, rrot = bit32.band, bit32.bxor, bit32.bnot, bit32.rshift, bit32.rrotate
elseif bit then
    -- LuaBitOp returns signed results: bring them back to 0..2^32-1.
    band = function(a, b) return bit.band(a, b) % M32 end
    bxor = function(a, b) return bit.bxor(a, b) % M32 end
    bnot = function(a) return bit.bnot(a) % M32 end
    rshift = function(a, n) return bit.rshift(a, n) % M32 end
    rrot = function(a, n) return bit.ror(a, n) % M32 end
else
    -- Lua 5.3+ without bit libraries: native operators, compiled at run time so that
    -- Lua 5.2 can still parse this file.
    band, bxor, bnot, rshift, rrot = load([[
        local M = 0xffffffff
        return function(a, b) return a & b end,
            function(a, b) return a ~ b end,
            function(a) return ~a & M end,
            function(a, n) return (a & M) >> n end,
            function(a, n) a = a & M; return ((a >> n) | (a << (32 - n))) & M end
    ]])()
end

local SHA256_K = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
}

--- SHA-256 of a Lua string; returns 64 lowercase hex digits (FIPS 180-4).
local function sha256_hex(msg)
    local h = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
        0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 }
    local ml = #msg
    local bits, tail = ml * 8, {}
    for i = 8, 1, -1 do
        tail[i] = string.char(bits % 256)
        bits = math.floor(bits / 256)
    end
    msg = msg .. "\128" .. string.rep("\0", (55 - ml) % 64) .. table.concat(tail)
    local w = {}
    for chunk = 1, #msg, 64 do
        for i = 0, 15 do
            local a, b, c, d = msg:byte(chunk + 4 * i, chunk + 4 * i + 3)
            w[i] = ((a * 256 + b) * 256 + c) * 256 + d
        end
        for i = 16, 63 do
            local x, y = w[i - 15], w[i - 2]
            local s0 = bxor(bxor(rrot(x, 7), rrot(x, 18)), rshift(x, 3))
            local s1 = bxor(bxor(rrot(y, 17), rrot(y, 19)), rshift(y, 10))
            w[i] = (w[i - 16] + s0 + w[i - 7] + s1) % M32
        end
        local a, b, c, d, e, ff, g, hh = h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8]
        for i = 0, 63 do
            local s1 = bxor(bxor(rrot(e, 6), rrot(e, 11)), rrot(e, 25))
            local ch = bxor(band(e, ff), band(bnot(e), g))
            local t1 = (hh + s1 + ch + SHA256_K[i + 1] + w[i]) % M32
            local s0 = bxor(bxor(rrot(a, 2), rrot(a, 13)), rrot(a, 22))
            local maj = bxor(bxor(band(a, b), band(a, c)), band(b, c))
            local t2 = (s0 + maj) % M32
            hh, g, ff, e, d, c, b, a = g, ff, e, (d + t1) % M32, c, b, a, (t1 + t2) % M32
        end
        h[1], h[2], h[3], h[4] = (h[1] + a) % M32, (h[2] + b) % M32, (h[3] + c) % M32, (h[4] + d) % M32
        h[5], h[6], h[7], h[8] = (h[5] + e) % M32, (h[6] + ff) % M32, (h[7] + g) % M32, (h[8] + hh) % M32
    end
    local out = {}
    for i = 1, 8 do out[i] = string.format("%08x", h[i]) end
    return table.concat(out)
end

local UTF8_LEAD_MOD = { [2] = 32, [3] = 16, [4] = 8 }

--- True when the Lua string `s` is well-formed UTF-8 (RFC 3629: no overlong forms, no
--- surrogates, nothing above U+10FFFF).
local function utf8_ok(s)
    local i, n = 1, #s
    while i <= n do
        local c = s:byte(i)
        if c < 0x80 then
            i = i + 1
        else
            local len, min
            if c >= 0xC2 and c <= 0xDF then len, min = 2, 0x80
            elseif c >= 0xE0 and c <= 0xEF then len, min = 3, 0x800
            elseif c >= 0xF0 and c <= 0xF4 then len, min = 4, 0x10000
            else return false end
            if i + len - 1 > n then return false end
            local cp = c % UTF8_LEAD_MOD[len]
            for j = i + 1, i + len - 1 do
                local b = s:byte(j)
                if b < 0x80 or b > 0xBF then return false end
                cp = cp * 64 + (b - 0x80)
            end
            if cp < min or cp > 0x10FFFF or (cp >= 0xD800 and cp <= 0xDFFF) then return false end
            i = i + len
        end
    end
    return true
end

--- True when `s` is UTF-8 without control characters other than tab and newline.
local function printable(s)
    return #s > 0 and utf8_ok(s) and not (s:gsub("[\t\n\r]", "")):find("%c")
end

--- Unix seconds (UInt64 or number) as an ISO 8601 UTC date, or "" when out of range.
local function utc(secs)
    local n = tonumber(tostring(secs))
    if not n or n <= 0 or n > 253402300799 then return "" end
    return os.date("!%Y-%m-%dT%H:%M:%SZ", n)
end

-- ---------------------------------------------------------------------------------------
-- Reader: a cursor over a tvb that adds items and flags malformed input
-- ---------------------------------------------------------------------------------------

-- Thrown (as the error value) to stop decoding a packet or frame after a malformed field.
local STOP = {}

local Reader = {}
Reader.__index = Reader

--- A cursor over tvb[start, limit) that adds items under `tree`.
local function reader(tvb, pinfo, tree, start, limit)
    return setmetatable({
        tvb = tvb, pinfo = pinfo, tree = tree, pos = start or 0,
        limit = limit or tvb:len(), bad = false, truncated = false,
    }, Reader)
end

--- Bytes left before the limit.
function Reader:left()
    return self.limit - self.pos
end

--- Adds the malformed expert info (on `range` if given) and remembers it; goes on.
function Reader:flag(range, text)
    self.bad = true
    if range and range:len() > 0 then
        self.tree:add_tvb_expert_info(ef_malformed, range, "Malformed: " .. text)
    else
        self.tree:add_proto_expert_info(ef_malformed, "Malformed: " .. text)
    end
end

--- Flags the rest as malformed (shown as undecoded bytes) and stops decoding.
function Reader:fail(range, text)
    self:flag(range, text)
    if self:left() > 0 then
        self.tree:add(f.data, self.tvb(self.pos, self:left()))
        self.pos = self.limit
    end
    error(STOP, 0)
end

--- Takes `n` bytes as a TvbRange and advances; a length that runs past the end is
--- malformed (or, when only the capture is short, a truncated capture) and stops.
function Reader:take(n, what)
    if n <= self:left() then
        local r = self.tvb(self.pos, n)
        self.pos = self.pos + n
        return r
    end
    -- Cut short by the capture (snap length, ICMP quote) rather than by the sender?
    local reported = self.tvb:reported_len()
    if self.limit == self.tvb:len() and reported > self.tvb:len()
        and self.pos + n <= reported then
        self.truncated = true
        self.tree:add_proto_expert_info(ef_truncated,
            string.format("%s: the capture holds only %d of the packet's %d bytes",
                what, self.tvb:len(), reported))
        if self:left() > 0 then self.tree:add(f.data, self.tvb(self.pos, self:left())) end
        self.pos = self.limit
        error(STOP, 0)
    end
    self:fail(nil, string.format("%s runs past the end (needs %d bytes, %d left)",
        what, n, self:left()))
end

--- Takes `n` bytes and adds them as `field`; returns the TvbRange (and the item).
function Reader:add(field, n, what)
    local r = self:take(n, what)
    return r, self.tree:add(field, r)
end

--- Takes `n` bytes of UTF-8 text (n may be 0) and adds them as string `field`; returns the text.
function Reader:text(field, n, what)
    local r = self:take(n, what)
    local s = n > 0 and r:raw() or ""
    self.tree:add(field, r, s)
    if not utf8_ok(s) then self:flag(r, what .. " is not UTF-8") end
    return s
end

--- Takes a fixed-width NUL-padded name (TCP plane) and adds it as `field`; returns the text.
function Reader:name(field, width, what)
    local r = self:take(width, what)
    local s = r:raw()
    local nul = s:find("\0", 1, true)
    local text = nul and s:sub(1, nul - 1) or s
    self.tree:add(field, r, text)
    if nul and s:find("[^\0]", nul) then
        self:flag(r, what .. ": a NUL byte followed by text")
    elseif not utf8_ok(text) then
        self:flag(r, what .. " is not UTF-8")
    end
    return text
end

--- Takes a 32-byte fingerprint, adds it as `field` (and the hidden generic field); returns
--- it as 64 lowercase hex digits.
function Reader:fp(field, what)
    local r = self:take(32, what)
    self.tree:add(field, r)
    self.tree:add(f.fingerprint, r):set_hidden()
    return tostring(r:bytes()):lower()
end

--- Requires the end of the layout: trailing bytes are malformed.
function Reader:done()
    if self:left() > 0 then
        self:fail(self.tvb(self.pos, self:left()),
            string.format("%d bytes after the last field", self:left()))
    end
end

--- Runs `fn(r, ...)`, catching STOP; rethrows real Lua errors (dissector bugs).
local function guarded(r, fn, ...)
    local ok, res = pcall(fn, r, ...)
    if ok then return res end
    if res ~= STOP then error(res, 0) end
    return nil
end

--- Reads `[family u8 4|6][addr 4|16][port u16]` (UDP payloads); returns "IP:PORT".
local function udp_addr(r)
    local fr = r:add(f.family, 1, "address family")
    local fam = fr:uint()
    local ip
    if fam == 4 then
        ip = tostring(r:add(f.addr, 4, "IPv4 address"):ipv4())
    elseif fam == 6 then
        ip = "[" .. tostring(r:add(f.addr6, 16, "IPv6 address"):ipv6()) .. "]"
    else
        r:fail(fr, "address family must be 4 or 6, not " .. fam)
    end
    local port = r:add(f.port, 2, "port"):uint()
    return ip .. ":" .. port
end

--- Reads the fixed 19-byte `[family 4|6][addr 16][port u16]` (directory record, forward).
local function wire_addr(r)
    local fr = r:add(f.family, 1, "address family")
    local fam = fr:uint()
    local ar = r:take(16, "address")
    local ip
    if fam == 4 then
        r.tree:add(f.addr, ar(0, 4))
        local pad = ar(4, 12)
        r.tree:add(f.addr_pad, pad)
        ip = tostring(ar(0, 4):ipv4())
        if pad:raw():find("[^\0]") then r:flag(pad, "IPv4 address padding must be zero") end
    elseif fam == 6 then
        r.tree:add(f.addr6, ar)
        ip = "[" .. tostring(ar:ipv6()) .. "]"
    else
        r:fail(fr, "address family must be 4 or 6, not " .. fam)
    end
    local port = r:add(f.port, 2, "port"):uint()
    return ip .. ":" .. port
end

-- ---------------------------------------------------------------------------------------
-- UDP: payloads of types 0-9 (each returns a summary for the Info column)
-- ---------------------------------------------------------------------------------------

--- The register payload `[cert_len u16][cert][cookie 16]?[flags u8]?`, also carried inside
--- directory records.
local function register_payload(r)
    local clr = r:add(f.cert_len, 2, "cert_len")
    local n = clr:uint()
    if n == 0 then r:fail(clr, "cert_len 0: a registration needs a certificate") end
    local cert, item = r:add(f.cert, n, "certificate (cert_len " .. n .. ")")
    local hex = sha256_hex(cert:raw())
    local fp_tvb = ByteArray.new(hex):tvb("Certificate fingerprint (SHA-256)")
    item:add(f.cert_fp, fp_tvb(0, 32)):set_generated()
    r.tree:add(f.fingerprint, fp_tvb(0, 32)):set_hidden()
    if rdv.prefs.decode_cert then
        -- The X.509 dissector writes its own columns: keep ours.
        local proto_col, info_col = tostring(r.pinfo.cols.protocol), tostring(r.pinfo.cols.info)
        pcall(function()
            DissectorTable.get("media_type"):try("application/pkix-cert", cert:tvb(), r.pinfo, item)
        end)
        r.pinfo.cols.protocol:set(proto_col)
        r.pinfo.cols.info:set(info_col)
    end
    local rest = r:left()
    local cookie = false
    if rest ~= 0 and rest ~= 1 and rest ~= 16 and rest ~= 17 then
        r:fail(r.tvb(r.pos, rest), string.format(
            "%d bytes after the certificate: must be none, a 16-byte cookie, a flags byte, "
            .. "or both", rest))
    end
    if rest >= 16 then
        r:add(f.cookie, 16, "cookie")
        cookie = true
    end
    local unlisted = false
    if rest == 1 or rest == 17 then
        local flags = r:add(f.register_flags, 1, "register flags")
        if flags:uint() ~= 1 then
            r:fail(flags, "register flags must be 0x01 (unlisted)")
        end
        unlisted = true
    end
    return string.format("fingerprint=%s %s%s", hex, cookie and "with cookie" or "without cookie",
        unlisted and ", unlisted" or "")
end

-- The payload decoders by type: each takes a Reader over the payload (and, for relays,
-- the direction) and returns the Info summary; malformed input stops it via Reader:fail.
local udp_payload = {}

udp_payload[0] = function(r) -- keepalive
    local n = r:left()
    if n > 0 then r:add(f.padding, n, "padding") end
    return n > 0 and string.format("(%d bytes padding)", n) or ""
end

udp_payload[1] = function(r) -- OK
    if r:left() == 0 then return "(empty, seed form)" end
    local ka = r:add(f.keepalive, 2, "keepalive_s"):uint()
    local ep = r:add(f.epoch, 4, "boot_epoch"):uint()
    local a = udp_addr(r)
    r:done()
    return string.format("keepalive=%ds epoch=0x%08x public=%s", ka, ep, a)
end

udp_payload[2] = register_payload

udp_payload[3] = function(r) -- server event
    local cr = r:add(f.event_code, 1, "event code")
    if cr:uint() ~= 1 then
        r:fail(cr, "unknown server event code " .. cr:uint() .. " (only 1, punch request)")
    end
    local peer = r:fp(f.peer, "peer fingerprint")
    local a = udp_addr(r)
    r:done()
    return string.format("punch request: peer %s at %s", peer, a)
end

udp_payload[4] = function(r, ctx) -- relay
    local field = ctx.from_server and f.source or f.destination
    local fp = r:fp(field, ctx.from_server and "source fingerprint" or "destination fingerprint")
    local n = r:left()
    r.tree:add(f.event_len, n):set_generated()
    if n == 0 then r:fail(nil, "empty event (1 to 1200 bytes)") end
    local ev = r:add(f.event, n, "event")
    local s = ev:raw()
    if printable(s) then r.tree:add(f.event_text, ev, s) end
    if n > MAX_EVENT then r:flag(ev, string.format("event of %d bytes (at most 1200)", n)) end
    return string.format("%s %s, %d bytes", ctx.from_server and "from" or "to", fp, n)
end

udp_payload[5] = function(r) -- lookup
    local fp = r:fp(f.target, "target fingerprint")
    r:done()
    return fp
end

udp_payload[6] = function(r) -- lookup answer
    local fp = r:fp(f.target, "target fingerprint")
    local sr = r:add(f.lookup_status, 1, "status")
    local st = sr:uint()
    local desc
    if st == 0 then
        local a = udp_addr(r)
        local age = r:add(f.age, 4, "age_s"):uint()
        desc = string.format("online %s age %ds", a, age)
    elseif st == 1 or st == 2 then
        local fr = r:add(f.family, 1, "address family")
        if fr:uint() ~= 0 then r:fail(fr, "family must be 0 when the target is not online") end
        local pr = r:add(f.port, 2, "port")
        if pr:uint() ~= 0 then r:fail(pr, "port must be 0 when the target is not online") end
        local age = r:add(f.age, 4, "age_s"):uint()
        desc = st == 1 and string.format("offline, seen %ds ago", age) or "unknown"
        if st == 2 and age ~= 0 then r:flag(nil, "age must be 0 for an unknown target") end
    else
        r:fail(sr, "lookup status must be 0, 1 or 2, not " .. st)
    end
    local hl = r:add(f.home_len, 1, "home_len"):uint()
    local home = r:text(f.home, hl, "home alias")
    r:done()
    return string.format("%s: %s%s", fp, desc, hl > 0 and (" home " .. home) or "")
end

--- The name of a UDP request type byte (0xFF: the packet could not be read).
local function request_name(req)
    if req == 255 then return "unreadable" end
    return TYPE_NAMES[req] or ("type " .. req)
end

udp_payload[7] = function(r) -- error
    local sr, item = r:add(f.status, 2, "status")
    local st = sr:uint()
    local rr, ritem = r:add(f.request, 1, "request type")
    ritem:append_text(" (" .. request_name(rr:uint()) .. ")")
    local n = r:add(f.detail_len, 1, "detail_len"):uint()
    local detail = r:text(f.detail, n, "detail")
    r:done()
    item:add_proto_expert_info(ef_refused, string.format("Refused %s: %d %s",
        request_name(rr:uint()), st, detail))
    return string.format("%d to %s: %s", st, request_name(rr:uint()), detail)
end

udp_payload[8] = function(r) -- fetch
    if r:left() > 0 then r:fail(r.tvb(r.pos, r:left()), "fetch has no payload") end
    return ""
end

udp_payload[9] = function(r) -- cookie
    r:add(f.cookie, 16, "cookie")
    r:done()
    return ""
end

--- STUN on the same port (docs/PROTOCOL.md §11.1): at least 20 bytes, first byte 0-3,
--- length field = the rest, and the magic cookie or an RFC 3489 Binding request (0x0001).
local function is_stun(tvb)
    local n = tvb:len()
    if n < 20 or tvb(0, 1):uint() > 3 or tvb(2, 2):uint() ~= n - 20 then return false end
    return tvb(4, 4):uint() == 0x2112A442 or tvb(0, 2):uint() == 1
end

--- The Root packet, plain or shifted, then its payload.
local function dissect_udp(tvb, pinfo, tree)
    if is_stun(tvb) then
        -- Wireshark's own: "stun-udp" (RFC 5389/8489), "classicstun" (RFC 3489).
        local name = tvb(4, 4):uint() == 0x2112A442 and "stun-udp" or "classicstun"
        local ok, stun = pcall(Dissector.get, name)
        if ok and stun then return stun:call(tvb, pinfo, tree) end
        pinfo.cols.protocol:set("STUN")
        pinfo.cols.info:set("STUN (not a Root packet)")
        return tvb:len()
    end
    pinfo.cols.protocol:set("RENDEZVOUS")
    local root = tree:add(rdv, tvb(), "Rendezvous (UDP)")
    local r = reader(tvb, pinfo, root)
    local summary = guarded(r, function(r)
        if tvb:reported_len() > MAX_DATAGRAM then
            r:flag(tvb(), string.format("datagram of %d bytes (at most 1400; answered 413)",
                tvb:reported_len()))
        end
        local pr = r:take(1, "params")
        local params = pr:uint()
        local pt = root:add(f.params, pr)
        pt:add(f.from_server, pr)
        pt:add(f.to_server, pr)
        pt:add(f.shifted, pr)
        pt:add(f.reserved, pr)
        if params >= 8 then r:flag(pr, "reserved params bits set") end
        local from_server = params % 2 == 1
        local shifted = math.floor(params / 4) % 2 == 1
        local k = 0
        if shifted then k = r:add(f.shift_len, 1, "shift_len"):uint() end
        local function junk()
            if k > 0 then r:add(f.junk, k, "junk") end
        end
        local tr = r:add(f.type, 1, "type")
        local ty = tr:uint()
        junk()
        local sl = r:add(f.sig_len, 2, "sig_len"):uint()
        junk()
        if sl > 0 then r:add(f.signature, sl, "signature") end
        junk()
        local tsr = r:take(8, "timestamp")
        local ts = tsr:uint64()
        root:add(f.timestamp, tsr):append_text(tostring(ts) ~= "0" and (" (" .. utc(ts) .. ")") or "")
        junk()
        local name = TYPE_NAMES[ty] or ("Unknown type " .. ty)
        local head = string.format("%s %s", from_server and "s->c" or "c->s", name)
        if shifted then head = head .. string.format(" [shifted %d]", k) end
        root:append_text(string.format(", %s (%d)%s", name, ty,
            shifted and string.format(", shifted %d", k) or ""))
        local fn = udp_payload[ty]
        if not fn then
            r:fail(tr, string.format("unknown packet type %d (0-9 are defined)", ty))
        end
        r.head = head
        local s = fn(r, { from_server = from_server })
        return head .. (s ~= "" and (" " .. s) or "")
    end)
    summary = summary or r.head or "Root packet"
    if r.bad then summary = summary .. " [Malformed]" end
    pinfo.cols.info:set(summary)
    return tvb:len()
end

-- ---------------------------------------------------------------------------------------
-- TCP: framing
-- ---------------------------------------------------------------------------------------

-- Framing results: ("ok", n) a whole frame of n bytes; ("more", n|nil) more bytes needed
-- (n = the frame's length when known); ("bad", text) no frame can be delimited here.

--- `[cmd][len u16][body]`, the body at most `max` bytes (default 4096).
local function var_frame_len(tvb, off, avail, max)
    max = max or MAX_VAR_BODY
    if avail < 3 then return "more", 3 end
    local len = tvb(off + 1, 2):uint()
    if len > max then
        return "bad", string.format("body length %d over %d", len, max)
    end
    if avail < 3 + len then return "more", 3 + len end
    return "ok", 3 + len
end

--- NodeListHash `[10][hash_len][hash]`.
local function hash_frame_len(tvb, off, avail)
    if avail < 2 then return "more", 2 end
    local n = 2 + tvb(off + 1, 1):uint()
    if avail < n then return "more", n end
    return "ok", n
end

--- NodeList / NodeListDiff `[cmd][count u32][entries]`, each entry
--- `[uid 16][version u64][alias_len][alias][location_len][location][key_len][key]`; a
--- NodeSync (`sync`) then `[want u16][ids 32 x want]`.
local function list_frame_len(tvb, off, avail, sync)
    if avail < 5 then return "more", 5 end
    local count = tvb(off + 1, 4):uint()
    if count > MAX_NODES then
        return "bad", string.format("node list of %d entries (at most 4096)", count)
    end
    local p = 5
    for _ = 1, count do
        p = p + 24
        for _ = 1, 3 do
            if avail < p + 1 then return "more", nil end
            p = p + 1 + tvb(off + p, 1):uint()
        end
    end
    if sync then
        if avail < p + 2 then return "more", p + 2 end
        local want = tvb(off + p, 2):uint()
        if want > MAX_NODES then
            return "bad", string.format("NodeSync wanting %d ids (at most 4096)", want)
        end
        p = p + 2 + ID_LEN * want
    end
    if avail < p then return "more", p end
    return "ok", p
end

--- Length of the opener's next frame (the hello when `hello`).
local function opener_frame_len(tvb, off, avail, role, hello)
    local cmd = tvb(off, 1):uint()
    if hello then
        if cmd ~= ROLE_SERVER and cmd ~= ROLE_CLIENT then
            return "bad", string.format("hello role must be 1 (server) or 2 (client), not %d", cmd)
        end
        if avail < HELLO_LEN then return "more", HELLO_LEN end
        return "ok", HELLO_LEN
    end
    if role ~= ROLE_SERVER and role ~= ROLE_CLIENT then
        return "bad", "command on a connection whose hello was not seen or was refused"
    end
    local fixed = (role == ROLE_SERVER and SERVER_FRAME_LEN or CLIENT_FRAME_LEN)[cmd]
    if fixed then
        if avail < fixed then return "more", fixed end
        return "ok", fixed
    end
    if role == ROLE_SERVER then
        if cmd == 10 then return hash_frame_len(tvb, off, avail) end
        if cmd == 11 or cmd == 12 then return list_frame_len(tvb, off, avail) end
        if cmd == 24 then return list_frame_len(tvb, off, avail, true) end
        if cmd == 16 or cmd == 17 or cmd == 18 or cmd == 21 or cmd == 23 then
            return var_frame_len(tvb, off, avail)
        end
        if cmd == 22 then return var_frame_len(tvb, off, avail, MAX_RECONCILE_BODY) end
    elseif cmd == 21 then
        return var_frame_len(tvb, off, avail)
    end
    return "bad", string.format("unknown command %d for a %s opener", cmd, ROLE_NAMES[role])
end

--- Length of the acceptor's next answer: `b` is the answer due (the key of the answer
--- tables: its first byte, 0 for a count).
local function answer_frame_len(tvb, off, avail, role, b)
    local fixed
    if b == 0 then fixed = 4
    elseif b == 1 then fixed = role == ROLE_SERVER and (1 + 4 + CONTACT_LEN) or (1 + CONTACT_LEN)
    elseif b == 3 then fixed = 5
    elseif b == 13 then fixed = 1 + 8 + 4 + CONTACT_LEN
    elseif b == 14 then fixed = 9
    elseif b == 19 then fixed = 5
    elseif b == 20 then fixed = 33
    end
    if fixed then
        if avail < fixed then return "more", fixed end
        return "ok", fixed
    end
    if b == 6 or b == 7 then
        if avail < 5 then return "more", 5 end
        local n
        if b == 6 then
            local len = tvb(off + 1, 4):uint()
            if len > MAX_STATUS_TEXT then
                return "bad", string.format("status text of %d bytes is implausible", len)
            end
            n = 5 + len
        else
            n = 5 + tvb(off + 4, 1):uint()
        end
        if avail < n then return "more", n end
        return "ok", n
    end
    if b == 10 then return hash_frame_len(tvb, off, avail) end
    if b == 12 then return list_frame_len(tvb, off, avail) end
    if b == 16 or b == 17 then return var_frame_len(tvb, off, avail) end
    if b == 22 then return var_frame_len(tvb, off, avail, MAX_RECONCILE_BODY) end
    return "bad", string.format("unknown answer byte %d", b)
end

-- ---------------------------------------------------------------------------------------
-- TCP: bodies
-- ---------------------------------------------------------------------------------------

--- `[username 256][contactname 256][phone 20]`; returns "user/contact=phone".
local function contact_fields(r)
    local u = r:name(f.username, NAME_LEN, "username")
    local c = r:name(f.contact, NAME_LEN, "contactname")
    local p = r:name(f.phone, PHONE_LEN, "phone")
    return string.format("%s/%s=%s", u, c, p)
end

--- One node-list entry, under its own subtree; returns the alias.
local function node_entry(r)
    local start = r.pos
    local outer = r.tree
    local sub = outer:add(f.node, r.tvb(r.pos, 0))
    r.tree = sub
    local ok, res = pcall(function()
        r:add(f.node_uid, 16, "uid")
        r:add(f.node_version, 8, "version")
        local al = r:add(f.node_alias_len, 1, "alias_len"):uint()
        local alias = r:text(f.node_alias, al, "alias")
        local ll = r:add(f.node_location_len, 1, "location_len"):uint()
        local loc = r:text(f.node_location, ll, "location")
        local klr = r:add(f.node_key_len, 1, "key_len")
        if klr:uint() == 0 then r:flag(klr, "a node key of 0 bytes") end
        if klr:uint() > 0 then r:add(f.node_key, klr:uint(), "key") end
        sub:append_text(string.format(": %s at %s", alias, loc))
        return alias
    end)
    sub:set_len(r.pos - start)
    r.tree = outer
    if not ok then error(res, 0) end
    return res
end

--- `[count u32][entries]` of NodeList and NodeListDiff.
local function node_list(r)
    local count = r:add(f.node_count, 4, "count"):uint()
    if count > MAX_NODES then r:fail(nil, "node list of more than 4096 entries") end
    for _ = 1, count do node_entry(r) end
    r:done()
    return string.format("%d entries", count)
end

--- `[count u32][entries][want u16][ids 32 x want]` of a NodeSync (24).
local function node_sync(r)
    local cr = r:add(f.node_count, 4, "count")
    local count = cr:uint()
    if count > MAX_NODES then r:fail(cr, "node list of more than 4096 entries") end
    for _ = 1, count do node_entry(r) end
    local wr = r:add(f.node_want, 2, "want")
    local want = wr:uint()
    if want > MAX_NODES then r:fail(wr, "a NodeSync wanting more than 4096 ids") end
    for _ = 1, want do r:add(f.node_want_id, ID_LEN, "wanted id") end
    r:done()
    return string.format("%d entries, %d ids wanted", count, want)
end

--- `[hash_len u8][hash]`.
local function node_hash(r)
    local hl = r:add(f.hash_len, 1, "hash_len")
    if hl:uint() ~= 64 then r:flag(hl, "a node-list hash must be 64 bytes, not " .. hl:uint()) end
    if hl:uint() > 0 then r:add(f.hash, hl:uint(), "hash") end
    return string.format("%d-byte hash", hl:uint())
end

--- A DirRecord body (command 16) of `len` bytes.
local function dir_record(r)
    local kr = r:add(f.dir_kind, 1, "kind")
    local kind = kr:uint()
    local hr = r:add(f.hops, 1, "hops")
    if hr:uint() > 16 then r:flag(hr, "over 16 hops") end
    local fp = r:fp(f.dir_fp, "fingerprint")
    local tsr = r:take(8, "timestamp")
    r.tree:add(f.dir_timestamp, tsr):append_text(" (" .. utc(tsr:uint64()) .. ")")
    r:add(f.age_ms, 4, "age_ms")
    if kind == 2 or kind == 3 then
        r:done()
        return string.format("%s %s", DIR_KINDS[kind], fp)
    end
    if kind ~= 1 then r:fail(kr, "record kind must be 1, 2 or 3, not " .. kind) end
    local a = wire_addr(r)
    r:add(f.dir_home_uid, 16, "home uid")
    local hl = r:add(f.home_len, 1, "home_len"):uint()
    local home = r:text(f.home, hl, "home alias")
    local sl = r:add(f.sig_len, 2, "sig_len"):uint()
    if sl > 0 then r:add(f.signature, sl, "signature") end
    local plr = r:add(f.payload_len, 2, "payload_len")
    local pl = plr:uint()
    if sl + pl > MAX_SIGNED_LEN then
        r:flag(plr, string.format("signature and payload of %d bytes (at most 1388)", sl + pl))
    end
    local sub_limit = r.pos + pl
    if pl > r:left() then r:take(pl, "registration payload") end
    local inner = reader(r.tvb, r.pinfo, r.tree, r.pos, sub_limit)
    guarded(inner, register_payload)
    if inner.bad then r.bad = true end
    r.pos = sub_limit
    r:done()
    return string.format("registration %s at %s home %s", fp, a, home)
end

--- A Forward body (command 18).
local function forward(r)
    local kr = r:add(f.forward_kind, 1, "kind")
    local kind = kr:uint()
    local hr = r:add(f.hops, 1, "hops")
    if hr:uint() > 8 then r:flag(hr, "over 8 hops") end
    r:add(f.forward_id, 8, "id")
    local target = r:fp(f.target, "target")
    local source = r:fp(f.source, "source")
    if kind == 1 then
        local a = wire_addr(r)
        r:done()
        return string.format("punch request for %s from %s at %s", target, source, a)
    elseif kind == 2 then
        local n = r:left()
        r.tree:add(f.event_len, n):set_generated()
        if n == 0 then r:fail(nil, "empty event (1 to 1200 bytes)") end
        local ev = r:add(f.event, n, "event")
        if printable(ev:raw()) then r.tree:add(f.event_text, ev, ev:raw()) end
        if n > MAX_EVENT then r:flag(ev, string.format("event of %d bytes (at most 1200)", n)) end
        return string.format("relayed event for %s from %s, %d bytes", target, source, n)
    end
    r:fail(kr, "forward kind must be 1 or 2, not " .. kind)
end

--- `[len u16][body]` of frames 16, 17, 18, 21: the body in a reader limited to it.
local function var_body(r, fn)
    local len = r:add(f.body_len, 2, "len"):uint()
    local inner = reader(r.tvb, r.pinfo, r.tree, r.pos, r.pos + len)
    local res = guarded(inner, fn)
    if inner.bad then r.bad = true end
    r.pos = r.pos + len
    return res or ""
end

--- `[len u16][ids 32 x k]` of a DirWant (23): len a multiple of 32, at most 4096.
local function dir_want(r)
    local lr = r:add(f.body_len, 2, "len")
    local len = lr:uint()
    if len > MAX_VAR_BODY then r:fail(lr, string.format("DirWant of %d bytes (at most 4096)", len)) end
    local k = math.floor(len / ID_LEN)
    r.tree:add(f.dir_want_count, k):set_generated()
    for _ = 1, k do r:add(f.dir_want_id, ID_LEN, "wanted id") end
    if len % ID_LEN ~= 0 then
        r:fail(r.tvb(r.pos, math.min(len % ID_LEN, r:left())),
            string.format("DirWant length %d is not a multiple of 32", len))
    end
    return string.format("%d ids", k)
end

--- `[len u16][set u8][message]` of a Reconcile (22) and of its answer (`answer`): the
--- set, and the negentropy message as opaque bytes with its length and version byte. An
--- answer of the set byte alone is busy.
local function reconcile(r, answer)
    local lr = r:add(f.body_len, 2, "len")
    local len = lr:uint()
    if len > MAX_RECONCILE_BODY then
        r:fail(lr, string.format("Reconcile of %d bytes (at most 60000)", len))
    end
    if len == 0 then r:fail(lr, "a Reconcile carries a set byte (len 0)") end
    local sr = r:take(1, "set")
    local set = sr:uint()
    r.tree:add(f.reconcile_set, sr)
    if not RECONCILE_SETS[set] then r:flag(sr, "reconcile set must be 1, 2 or 3, not " .. set) end
    local n = len - 1
    r.tree:add(f.reconcile_message_len, n):set_generated()
    local head = string.format("set %d (%s)", set, RECONCILE_SETS[set] or "unknown")
    if n == 0 then
        if answer then
            r.tree:add(f.reconcile_busy, sr, true):set_generated()
            return head .. " busy"
        end
        r:fail(lr, "a Reconcile without a message")
    end
    local mr, mi = r:add(f.reconcile_message, n, "message")
    local vr = mr(0, 1)
    mi:add(f.reconcile_version, vr)
    if vr:uint() ~= NEGENTROPY_V1 then
        r:flag(vr, string.format("not a negentropy version 1 message (first byte 0x%02x, not 0x61)",
            vr:uint()))
    end
    r:done()
    return string.format("%s, %d-byte message", head, n)
end

--- AuthProof body: `[node entry][sig_len u8][signature]`.
local function auth_proof(r)
    local alias = node_entry(r)
    local sl = r:add(f.auth_sig_len, 1, "sig_len"):uint()
    if sl > 0 then r:add(f.signature, sl, "signature") end
    r:done()
    return "node " .. alias
end

--- A client's AuthProof body (PROTOCOL.md 8.18): `[cert_len u16][cert][sig_len
--- u16][signature]`.
local function client_auth_proof(r)
    local clr = r:add(f.cert_len, 2, "cert_len")
    local n = clr:uint()
    if n == 0 then r:fail(clr, "cert_len 0: a proof needs a certificate") end
    r:add(f.cert, n, "certificate (cert_len " .. n .. ")")
    local slr = r:add(f.sig_len, 2, "sig_len")
    local sl = slr:uint()
    if sl == 0 then r:fail(slr, "sig_len 0: a proof needs a signature") end
    r:add(f.signature, sl, "signature")
    r:done()
    return string.format("certificate %d bytes", n)
end

--- Commands of a client-role opener (after the command byte); returns a summary.
local client_command = {
    [1] = contact_fields,
    [2] = function() return "" end,
    [5] = function() return "" end,
    [6] = function() return "" end,
    [20] = function() return "" end,
    [21] = function(r) return var_body(r, client_auth_proof) end,
}

--- Commands of a server-role opener (after the command byte); returns a summary.
local server_command = {
    [1] = function(r)
        local c = r:add(f.clock, 4, "clock"):uint()
        return string.format("clock %d %s", c, contact_fields(r))
    end,
    [2] = function(r)
        local h = r:add(f.health, 1, "health"):uint()
        local c = r:add(f.clock, 4, "clock"):uint()
        return string.format("health %s clock %d", HEALTH_NAMES[h] or tostring(h), c)
    end,
    [3] = function(r) return "clock " .. r:add(f.clock, 4, "clock"):uint() end,
    [4] = function() return "" end,
    [5] = function() return "" end,
    [6] = function() return "" end,
    [10] = node_hash,
    [11] = node_list,
    [12] = function(r)
        r.tree:add_proto_expert_info(ef_guess, "NodeListDiff is only ever an answer (400 from an opener)")
        return node_list(r)
    end,
    [13] = function(r)
        local line = r:add(f.line, 8, "line"):uint64()
        local c = r:add(f.clock, 4, "clock"):uint()
        return string.format("line %s clock %d %s", tostring(line), c, contact_fields(r))
    end,
    [14] = function(r)
        return "journal " .. tostring(r:add(f.journal_id, 8, "journal_id"):uint64():tohex())
    end,
    [15] = function(r) return "line " .. tostring(r:add(f.line, 8, "line"):uint64()) end,
    [16] = function(r) return var_body(r, dir_record) end,
    [17] = function(r)
        local lr = r:add(f.body_len, 2, "len")
        if lr:uint() ~= 0 then r:fail(lr, "DirRequest has no body (len must be 0)") end
        return ""
    end,
    [18] = function(r) return var_body(r, forward) end,
    [19] = function(r)
        r:add(f.journal_id, 8, "journal_id")
        local since = r:add(f.since, 8, "since"):uint64()
        local lr = r:add(f.limit, 4, "limit")
        if lr:uint() == 0 or lr:uint() > 4096 then
            r:flag(lr, "limit must be 1 to 4096, not " .. lr:uint())
        end
        return string.format("since %s limit %d", tostring(since), lr:uint())
    end,
    [20] = function() return "" end,
    [21] = function(r) return var_body(r, auth_proof) end,
    [22] = function(r) return reconcile(r, false) end,
    [23] = dir_want,
    [24] = node_sync,
}

--- Answers from the acceptor (after the first byte, except the count which has none).
local answers = {
    [0] = function(r) return tostring(r:add(f.count, 4, "count"):uint()) end,
    [1] = function(r, ctx)
        if ctx.role == ROLE_SERVER then
            local c = r:add(f.clock, 4, "clock"):uint()
            return string.format("clock %d %s", c, contact_fields(r))
        end
        if ctx.role ~= ROLE_CLIENT then
            r.tree:add_proto_expert_info(ef_guess, "hello not seen: assuming a client-role record")
        end
        return contact_fields(r)
    end,
    [3] = function(r) return "clock " .. r:add(f.clock, 4, "clock"):uint() end,
    [6] = function(r)
        local n = r:add(f.status_text_len, 4, "len"):uint()
        local text = r:text(f.status_text, n, "status text")
        return string.format("%d bytes%s", n, text:match("^name=([^\n]*)") and
            (" name=" .. text:match("^name=([^\n]*)")) or "")
    end,
    [7] = function(r, ctx)
        local sr, item = r:add(f.status, 2, "status")
        local rr, ri = r:add(f.request, 1, "request")
        local req = rr:uint()
        local names = ctx.role == ROLE_SERVER and SERVER_COMMANDS or CLIENT_COMMANDS
        ri:append_text(" (" .. (req == 0 and "hello" or req == 255 and "no single command"
            or names[req] or "unknown command") .. ")")
        local n = r:add(f.detail_len, 1, "detail_len"):uint()
        local detail = r:text(f.detail, n, "detail")
        if sr:uint() ~= 200 then
            item:add_proto_expert_info(ef_refused, string.format("Refused command %d: %d %s",
                rr:uint(), sr:uint(), detail))
        end
        return string.format("%d (request %d) %s", sr:uint(), rr:uint(), detail)
    end,
    [10] = node_hash,
    [12] = node_list,
    [13] = server_command[13],
    [14] = function(r) return "line " .. tostring(r:add(f.line, 8, "line"):uint64()) end,
    [16] = server_command[16],
    [17] = function(r)
        local lr = r:add(f.body_len, 2, "len")
        if lr:uint() ~= 4 then r:fail(lr, "directory end carries a 4-byte count") end
        return tostring(r:add(f.count, 4, "count"):uint()) .. " records"
    end,
    [19] = function(r) return tostring(r:add(f.count, 4, "count"):uint()) .. " lines" end,
    [20] = function(r)
        r:add(f.nonce, 32, "nonce")
        return ""
    end,
    [22] = function(r) return reconcile(r, true) end,
}

-- ---------------------------------------------------------------------------------------
-- TCP: connections and the reassembly loop
-- ---------------------------------------------------------------------------------------

-- Per TCP connection (keyed by tcp.stream): who opened it, its role, where its hello was
-- decoded and where a direction lost its framing (so that later passes over visited
-- frames, as the GUI and `tshark -2` make, find the same frames).
local conns = {}
-- Frame number of the last first-pass (not yet visited) frame: a first pass that starts
-- over (a new file, or a full redissection) clears the state. Not cleared in `init`, which
-- `tshark -2` also calls between its passes.
local last_first_pass = nil

--- The state of this packet's connection.
local function conn_of(pinfo)
    if not pinfo.visited then
        if last_first_pass and pinfo.number < last_first_pass then conns = {} end
        last_first_pass = pinfo.number
    end
    local s = f_tcp_stream()
    local key = s and tostring(s.value) or
        table.concat({ tostring(pinfo.src), pinfo.src_port, tostring(pinfo.dst), pinfo.dst_port }, " ")
    local c = conns[key]
    if not c then
        -- Met first on a visited frame (`tshark -2` without a dissecting first pass): the
        -- state is built now, in frame order, as a first pass would have.
        c = { late = pinfo.visited }
        conns[key] = c
    end
    return c
end

--- True when this dissection builds the connection's state (a first pass), false when it
--- only reads what a first pass recorded.
local function fresh(pinfo, c)
    return not pinfo.visited or c.late
end

--- True when this segment comes from the connection's opener.
local function from_opener(pinfo, c)
    local port = rdv.prefs.port
    local sp, dp = pinfo.src_port, pinfo.dst_port
    if dp == port and sp ~= port then return true end
    if sp == port and dp ~= port then return false end
    local me = tostring(pinfo.src) .. " " .. sp
    if not c.opener then c.opener = me end -- the opener speaks first (its hello)
    return c.opener == me
end

--- True when the frame at raw offset `raw` of this packet is the connection's hello.
local function is_hello(pinfo, c, raw)
    if c.hello_frame == nil then return fresh(pinfo, c) end
    return c.hello_frame == pinfo.number and c.hello_raw == raw
end

--- Sets the Info column for one frame of a TCP segment (several frames are joined).
local function info_add(pinfo, text)
    if pinfo.private.rendezvous_info then
        pinfo.cols.info:append("; " .. text)
    else
        pinfo.private.rendezvous_info = "1"
        pinfo.cols.info:set(text)
    end
end

-- ---------------------------------------------------------------------------------------
-- TCP: what was asked (the rules of the answer codec, src/wire/tcp/answer/)
-- ---------------------------------------------------------------------------------------

-- The acceptor answers in the order asked (docs/PROTOCOL.md §8.5, §8.7). As the codec's
-- AnswerReader does, a connection whose hello was seen keeps the requests still to be
-- answered, and each answer is framed as the one due: the count that starts a ListAll or
-- AskForUpdate answer whatever its first byte, a record while records are due; bytes that
-- start no answer to the request in front (or a status 200 nobody waits for) are
-- malformed, and the rest of the direction is not decoded. A HeartBeat may be answered
-- with nothing, known from the next byte. Without the hello (a capture that starts late),
-- an answer is framed by its first byte alone (a count must then start with 0).

local MAX_PENDING = 65536 -- requests awaiting answers; past that, framing by first byte

-- What a command asks for, by role and command byte.
local ASKS = {
    [ROLE_CLIENT] = { [2] = "list", [5] = "status", [6] = "text", [20] = "nonce", [21] = "status" },
    [ROLE_SERVER] = {
        [2] = "heartbeat", [4] = "list", [5] = "status", [6] = "text", [10] = "hash",
        [11] = "diff", [14] = "cursor", [17] = "dir", [19] = "journal", [20] = "nonce",
        [21] = "status", [22] = "reconcile", [23] = "dir", [24] = "diff",
    },
}
-- The first byte of the one-frame answers.
local ANSWER_BYTE = {
    heartbeat = 3, text = 6, hash = 10, diff = 12, cursor = 14, nonce = 20, reconcile = 22,
}
local ASKED_NAMES = {
    list = "a ListAll or AskForUpdate", status = "a Barrier or AuthProof", text = "a Status",
    heartbeat = "a HeartBeat", hash = "a NodeListHash", diff = "a NodeList or NodeSync",
    cursor = "a CursorQuery", dir = "a DirRequest or DirWant", journal = "a JournalSince",
    nonce = "an AuthChallenge", reconcile = "a Reconcile",
}

--- The request whose answer is due, if any.
local function due_now(q)
    if q.first <= q.last then return q[q.first] end
end

--- Done with the request in front.
local function answered_front(c)
    local q = c.asked
    q[q.first] = nil
    q.first = q.first + 1
    c.left = nil
end

--- Notes that the opener sent command `cmd` (first pass only).
local function ask(c, cmd)
    local kind = ASKS[c.role] and ASKS[c.role][cmd]
    local q = c.asked
    if not kind or not q then return end
    if q.last - q.first + 1 >= MAX_PENDING then
        c.asked = nil -- too many to follow: framing by first byte from now on
        return
    end
    q.last = q.last + 1
    q[q.last] = kind
end

--- The answer due where an answer starts with byte `b` (`status`: its status code when it
--- is a status frame and the code is in): the key of the answer tables (0 for a count),
--- or nil and why these bytes are not the answer due.
local function answer_due(c, b, status)
    local q = c.asked
    if not q then return b end
    while due_now(q) == "heartbeat" and b ~= 3 do
        answered_front(c) -- the HeartBeat was answered with nothing
    end
    local due = due_now(q)
    local function unexpected()
        return nil, string.format("byte %d where the answer to %s was due (not the answer due)",
            b, ASKED_NAMES[due])
    end
    if b == 7 or due == "status" then
        if b ~= 7 then return unexpected() end
        if status == 200 and due ~= "status" then
            return nil, due and string.format(
                "a status 200 where the answer to %s was due (not the answer due)", ASKED_NAMES[due])
                or "a status 200 when nothing was asked (not the answer due)"
        end
        return 7
    end
    if not due then
        return nil, string.format("byte %d when nothing was asked (not the answer due)", b)
    end
    if due == "list" then return c.left and 1 or 0 end
    local want = ANSWER_BYTE[due]
    if due == "journal" then want = c.left and 13 or 19 end
    if due == "dir" and (b == 16 or b == 17) then want = b end
    if b ~= want then return unexpected() end
    return want
end

--- The answer due at raw offset `raw` of this packet: computed on a first pass (and kept
--- for later passes, which only read it), as `answer_due`.
local function answer_key(pinfo, c, raw, tvb, off, avail)
    local b = tvb(off, 1):uint()
    local id = pinfo.number .. ":" .. raw
    if not fresh(pinfo, c) then
        local k = c.dues and c.dues[id]
        if k == nil then return b end
        if type(k) == "string" then return nil, k end
        return k
    end
    local status = b == 7 and avail >= 3 and tvb(off + 1, 2):uint() or nil
    local key, why = answer_due(c, b, status)
    c.dues = c.dues or {}
    c.dues[id] = key or why
    return key, why
end

--- Moves past the answer piece `key` just decoded at `off` (first pass only).
local function answer_read(c, key, tvb, off)
    if not c.asked then return end
    if key == 7 then
        if tvb(off + 1, 2):uint() == 200 then
            answered_front(c)
        else
            -- A refusal: the acceptor closes, nothing more is answered.
            c.asked, c.left = { first = 1, last = 0 }, nil
        end
    elseif key == 0 or key == 19 then
        local n = tvb(off + (key == 19 and 1 or 0), 4):uint()
        if n == 0 then answered_front(c) else c.left = n end
    elseif key == 1 or key == 13 then
        c.left = (c.left or 1) - 1
        if c.left == 0 then answered_front(c) end
    elseif key ~= 16 then
        answered_front(c)
    end
end

--- Decodes one whole frame tvb[off, off+n) (`key`: for an answer, the answer due).
local function dissect_frame(tvb, pinfo, tree, c, opener, hello, off, n, raw, key)
    local item = tree:add(rdv, tvb(off, n))
    item:add(f.direction, opener and 1 or 2):set_generated()
    local r = reader(tvb, pinfo, item, off, off + n)
    local title
    local summary = guarded(r, function(r)
        if hello then
            local rr = r:add(f.role, 1, "role")
            local name = r:name(f.hello_name, NAME_LEN, "name")
            if fresh(pinfo, c) then
                c.role = rr:uint()
                c.hello_frame, c.hello_raw = pinfo.number, raw
                c.asked, c.left = { first = 1, last = 0 }, nil
            end
            title = "Hello"
            return string.format("%s %q", ROLE_NAMES[rr:uint()] or "?", name)
        end
        local b = tvb(off, 1):uint()
        if opener then
            local names = c.role == ROLE_SERVER and SERVER_COMMANDS or CLIENT_COMMANDS
            local cmds = c.role == ROLE_SERVER and server_command or client_command
            local _, ci = r:add(f.command, 1, "command")
            title = names[b] or ("Command " .. b)
            ci:append_text(" (" .. title .. ")")
            if fresh(pinfo, c) then ask(c, b) end
            return cmds[b](r)
        end
        title = ANSWER_NAMES[key] or ("Answer " .. key)
        if key ~= 0 then
            local ar, ai = r:add(f.answer, 1, "answer")
            ai:append_text(key == 1 and (c.role == ROLE_SERVER and " (server-role record)"
                or " (client-role record)") or "")
            if b ~= key then r:flag(ar, string.format("a record starts with 1, not %d", b)) end
        else
            item:add(f.answer, 0):set_generated()
        end
        return answers[key](r, { role = c.role })
    end)
    if not opener and not hello and fresh(pinfo, c) then answer_read(c, key, tvb, off) end
    title = title or "Frame"
    local text = title .. ((summary and summary ~= "") and (" " .. summary) or "")
    if r.bad then text = text .. " [Malformed]" end
    item:append_text(string.format(" (TCP, %s): %s", opener and "opener" or "acceptor", text))
    info_add(pinfo, text)
end

--- The TCP stream: frames are cut from the reassembled bytes; an incomplete frame asks
--- the TCP dissector for more (desegment_offset/desegment_len).
local function dissect_tcp(tvb, pinfo, tree)
    pinfo.cols.protocol:set("RENDEZVOUS")
    local c = conn_of(pinfo)
    local opener = from_opener(pinfo, c)
    local len = tvb:len()
    local off = 0
    while off < len do
        local raw = tvb:offset() + off
        local hello = opener and is_hello(pinfo, c, raw)
        local avail = len - off
        local lost = opener and c.opener_lost or (not opener and c.acceptor_lost)
        if lost and pinfo.number > lost then
            -- The framing of this direction was lost at an earlier malformed frame (the
            -- server closes such a connection): show the bytes, flag nothing twice.
            local item = tree:add(rdv, tvb(off, avail))
            item:add(f.direction, opener and 1 or 2):set_generated()
            item:add(f.data, tvb(off, avail))
            item:add_proto_expert_info(ef_truncated, string.format(
                "Not decoded: this direction lost its framing at frame %d", lost))
            item:append_text(" (TCP): not decoded after the malformed frame " .. lost)
            info_add(pinfo, "[not decoded after frame " .. lost .. "]")
            return len
        end
        local st, n, key
        if opener then
            st, n = opener_frame_len(tvb, off, avail, c.role, hello)
        else
            key, n = answer_key(pinfo, c, raw, tvb, off, avail)
            if key then
                st, n = answer_frame_len(tvb, off, avail, c.role, key)
            else
                st = "bad"
            end
        end
        if st == "more" then
            pinfo.desegment_offset = off
            pinfo.desegment_len = n and (n - avail) or DESEGMENT_ONE_MORE_SEGMENT
            return len
        elseif st == "bad" then
            local item = tree:add(rdv, tvb(off, avail))
            item:add(f.direction, opener and 1 or 2):set_generated()
            item:add(f.data, tvb(off, avail))
            item:add_tvb_expert_info(ef_malformed, tvb(off, avail), "Malformed: " .. n)
            item:append_text(" (TCP): [Malformed] " .. n)
            if fresh(pinfo, c) then
                if hello then c.hello_frame, c.hello_raw = pinfo.number, raw end
                if opener then
                    c.opener_lost = c.opener_lost or pinfo.number
                    c.asked = nil -- what it asks next is unknown
                else
                    c.acceptor_lost = c.acceptor_lost or pinfo.number
                end
            end
            info_add(pinfo, "[Malformed] " .. n)
            return len
        end
        dissect_frame(tvb, pinfo, tree, c, opener, hello, off, n, raw, key)
        off = off + n
    end
    return len
end

-- ---------------------------------------------------------------------------------------
-- Registration
-- ---------------------------------------------------------------------------------------

--- Entry point: TCP segments (a tcp.stream exists) or UDP datagrams.
function rdv.dissector(tvb, pinfo, tree)
    if tvb:len() == 0 then return 0 end
    if f_tcp_stream() then return dissect_tcp(tvb, pinfo, tree) end
    return dissect_udp(tvb, pinfo, tree)
end

local registered_port = nil

--- (Re)registers the protocol on the preference's UDP and TCP port.
local function register_port()
    local udp, tcp = DissectorTable.get("udp.port"), DissectorTable.get("tcp.port")
    if registered_port and registered_port ~= 0 then
        udp:remove(registered_port, rdv)
        tcp:remove(registered_port, rdv)
    end
    registered_port = rdv.prefs.port
    if registered_port ~= 0 then
        udp:add(registered_port, rdv)
        tcp:add(registered_port, rdv)
    end
end

--- Moves the registration when the port preference changes.
function rdv.prefs_changed()
    if rdv.prefs.port ~= registered_port then register_port() end
end

register_port()
DissectorTable.get("udp.port"):add_for_decode_as(rdv)
DissectorTable.get("tcp.port"):add_for_decode_as(rdv)
