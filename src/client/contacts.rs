//! A blocking client of the TCP plane's client role (seed 003): hello, Update, ListAll and
//! the project's Barrier, which answers once every earlier write is durable.

use crate::wire::tcp::{self, ClientCommand, ContactFields, Hello, Role, StatusFrame};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One contact as listed: `(username, contact, phone)`.
pub type Listed = (String, String, String);

/// A connection in the client role.
pub struct ContactsClient {
    stream: TcpStream,
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl ContactsClient {
    /// Connects to `server` and says hello as client `name` (at most 256 bytes).
    ///
    /// # Errors
    /// Connection errors; `InvalidInput` for a name that does not fit.
    pub fn connect(server: SocketAddr, name: &str, timeout: Duration) -> io::Result<Self> {
        let mut stream = TcpStream::connect_timeout(&server, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        let mut hello = [0u8; tcp::HELLO_LEN];
        Hello {
            role: Role::Client,
            name,
        }
        .emit(&mut hello)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        stream.write_all(&hello)?;
        Ok(ContactsClient { stream })
    }

    /// Sends an Update (no answer comes; see [`Self::barrier`]).
    ///
    /// # Errors
    /// Write errors; `InvalidInput` for fields that do not fit (256/256/20 bytes).
    pub fn update(&mut self, username: &str, contact: &str, phone: &str) -> io::Result<()> {
        let cmd = ClientCommand::Update(ContactFields {
            username,
            contact,
            phone,
        });
        let mut buf = [0u8; tcp::CLIENT_RECORD_LEN];
        let n = cmd
            .emit(&mut buf)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        self.stream.write_all(&buf[..n])
    }

    fn read_status(&mut self) -> io::Result<(u16, String)> {
        let mut head = [0u8; StatusFrame::FIXED_LEN];
        self.stream.read_exact(&mut head)?;
        if head[0] != tcp::CMD_STATUS {
            return Err(bad(format!(
                "expected a status frame, got command {}",
                head[0]
            )));
        }
        let mut frame = head.to_vec();
        frame.resize(StatusFrame::FIXED_LEN + usize::from(head[4]), 0);
        self.stream
            .read_exact(&mut frame[StatusFrame::FIXED_LEN..])?;
        let f = StatusFrame::parse(&frame).map_err(|e| bad(e.to_string()))?;
        Ok((f.status, f.detail.to_string()))
    }

    /// Waits until every earlier command on this connection is durable (status 200).
    ///
    /// # Errors
    /// Read errors, or `Other` with the server's status and detail when it is not 200.
    pub fn barrier(&mut self) -> io::Result<()> {
        self.stream.write_all(&[tcp::CMD_BARRIER])?;
        match self.read_status()? {
            (200, _) => Ok(()),
            (s, d) => Err(io::Error::other(format!("server answered {s}: {d}"))),
        }
    }

    /// Asks for the server's status: UTF-8 `key=value` lines (name, Lamport clock, contact
    /// count and SHA-512 digest, directory size and digest, one `peer=` line per peer).
    ///
    /// # Errors
    /// Read errors; `InvalidData` for a malformed answer (or a refusal).
    pub fn status(&mut self) -> io::Result<String> {
        self.stream.write_all(&[tcp::CMD_STATUS_REQUEST])?;
        let mut head = [0u8; 5];
        self.stream.read_exact(&mut head)?;
        if head[0] != tcp::CMD_STATUS_REQUEST {
            return Err(bad(format!(
                "expected a status answer, got byte {}",
                head[0]
            )));
        }
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if len > 1 << 20 {
            return Err(bad(format!("status answer of {len} bytes is implausible")));
        }
        let mut text = vec![0u8; len];
        self.stream.read_exact(&mut text)?;
        String::from_utf8(text).map_err(|_| bad("status answer is not UTF-8".into()))
    }

    /// Lists every contact, in (username, contact) order.
    ///
    /// # Errors
    /// Read errors; `InvalidData` for a malformed answer.
    pub fn list_all(&mut self) -> io::Result<Vec<Listed>> {
        let mut out = Vec::new();
        self.list_each(|u, c, p| out.push((u.to_string(), c.to_string(), p.to_string())))?;
        Ok(out)
    }

    /// Lists every contact, calling `f` for each without holding the list.
    ///
    /// # Errors
    /// As [`Self::list_all`].
    pub fn list_each(&mut self, mut f: impl FnMut(&str, &str, &str)) -> io::Result<u32> {
        self.stream.write_all(&[tcp::CMD_LIST_ALL])?;
        let mut first = [0u8; 4];
        self.stream.read_exact(&mut first)?;
        if first[0] == tcp::CMD_STATUS {
            return Err(bad("the server refused ListAll".into()));
        }
        let count = u32::from_be_bytes(first);
        let mut rec = [0u8; tcp::CLIENT_RECORD_LEN];
        for _ in 0..count {
            self.stream.read_exact(&mut rec)?;
            let fields = tcp::parse_client_record(&rec).map_err(|e| bad(e.to_string()))?;
            f(fields.username, fields.contact, fields.phone);
        }
        Ok(count)
    }
}
