//! The metrics thread's HTTP/1.1: one connection at a time, one request per connection
//! (`Connection: close`). The request head may be at most [`MAX_HEAD`] bytes and must
//! arrive within [`READ_DEADLINE`]; only `GET /metrics` and `GET /healthz` are answered
//! (404 otherwise). The metrics body is OpenMetrics text when the `Accept` header asks for
//! `application/openmetrics-text` (as Prometheus does), else the Prometheus text format
//! 0.0.4. `/healthz` is 200 `ok` while the server serves, 503 `starting` before its loop
//! runs and 503 `draining` once it stops (docs/METRICS.md, "Health").

use super::{Health, Metrics};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most bytes of a request head (request line and headers).
const MAX_HEAD: usize = 8192;
/// The whole head must arrive within this long.
const READ_DEADLINE: Duration = Duration::from_secs(2);
/// A scraper that does not take the answer within this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT_004: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Starts the thread answering on `listener`.
pub(super) fn spawn(listener: TcpListener, metrics: Arc<Metrics>) -> io::Result<()> {
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(s) => {
                        if let Err(e) = answer(s, &metrics) {
                            tracing::debug!(%e, "a metrics request failed");
                        }
                    }
                    Err(e) => {
                        // Out of descriptors, for example: do not spin.
                        tracing::warn!(%e, "metrics listener: accept failed");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })?;
    Ok(())
}

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ask {
    /// `GET /metrics`, in OpenMetrics or not.
    Metrics { openmetrics: bool },
    /// `GET /healthz`.
    Health,
    /// Anything else.
    Other,
}

/// Reads one request and answers it.
fn answer(mut s: TcpStream, metrics: &Metrics) -> io::Result<()> {
    s.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let reply = match read_head(&mut s)? {
        None => reply("400 Bad Request", "text/plain", b"bad request\n"),
        Some(head) => match ask(&head) {
            Ask::Metrics { openmetrics } => {
                let body = metrics.render(openmetrics);
                let ty = if openmetrics { OPENMETRICS } else { TEXT_004 };
                reply("200 OK", ty, body.as_bytes())
            }
            Ask::Health => match metrics.health() {
                Health::Serving => reply("200 OK", "text/plain", b"ok\n"),
                Health::Starting => reply("503 Service Unavailable", "text/plain", b"starting\n"),
                Health::Draining => reply("503 Service Unavailable", "text/plain", b"draining\n"),
            },
            Ask::Other => reply(
                "404 Not Found",
                "text/plain",
                b"only GET /metrics and GET /healthz\n",
            ),
        },
    };
    s.write_all(&reply)?;
    s.flush()?;
    let _ = s.shutdown(std::net::Shutdown::Write);
    Ok(())
}

/// Reads until the blank line that ends the head; `None` when it is too large or does not
/// arrive in time (or the peer closes first).
fn read_head(s: &mut TcpStream) -> io::Result<Option<Vec<u8>>> {
    let deadline = Instant::now() + READ_DEADLINE;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        s.set_read_timeout(Some(left))?;
        let n = match s.read(&mut buf) {
            Ok(0) => return Ok(None),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        head.extend_from_slice(&buf[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            return Ok(Some(head));
        }
        if head.len() > MAX_HEAD {
            return Ok(None);
        }
    }
}

/// What the head asks for: `GET /metrics` or `GET /healthz` (any query string) over
/// HTTP/1.x, or other.
fn ask(head: &[u8]) -> Ask {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let (method, target, version) = (first.next(), first.next(), first.next());
    let path = target.map(|t| t.split('?').next().unwrap_or(t));
    if method != Some("GET") || !version.is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Ask::Other;
    }
    match path {
        Some("/metrics") => {}
        Some("/healthz") => return Ask::Health,
        _ => return Ask::Other,
    }
    let openmetrics = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("accept") && v.contains("application/openmetrics-text")
        })
    });
    Ask::Metrics { openmetrics }
}

/// A whole HTTP/1.1 response.
fn reply(status: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_metrics_and_healthz_are_asked_for() {
        let get = |h: &str| ask(h.as_bytes());
        assert_eq!(
            get("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Ask::Metrics { openmetrics: false }
        );
        assert_eq!(
            get("GET /metrics?x=1 HTTP/1.0\r\naccept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n\r\n"),
            Ask::Metrics { openmetrics: true }
        );
        assert_eq!(get("GET /healthz HTTP/1.1\r\n\r\n"), Ask::Health);
        assert_eq!(get("GET /healthz?x HTTP/1.0\r\n\r\n"), Ask::Health);
        assert_eq!(get("POST /healthz HTTP/1.1\r\n\r\n"), Ask::Other);
        assert_eq!(get("GET / HTTP/1.1\r\n\r\n"), Ask::Other);
        assert_eq!(get("POST /metrics HTTP/1.1\r\n\r\n"), Ask::Other);
        assert_eq!(get("GET /metricsx HTTP/1.1\r\n\r\n"), Ask::Other);
        assert_eq!(get("GET /metrics\r\n\r\n"), Ask::Other);
    }
}
