//! Helpers shared by the integration tests: child processes whose stdout is read line by
//! line with deadlines, the real server binary started on a free port, and (in `netns`) a
//! real NAT built from Linux network namespaces, and (in `drain`) a drain made to last.
//!
//! Every helper waits on events with a deadline, never with a fixed sleep, and every child
//! process is killed by its pid when its owner is dropped, also when a test panics.

#![allow(dead_code)]

pub mod drain;
pub mod netns;

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The server/client binary under test, built by cargo for integration tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_rendezvous");

/// How long a server may take to print `listening udp ADDR:PORT`.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// How many lines of a child's stderr are kept for the failure report.
const STDERR_KEEP: usize = 400;

/// A `Command` for the binary under test.
pub fn bin() -> Command {
    Command::new(BIN)
}

/// Reads a stream line by line on its own thread and hands the lines to the test, which
/// waits for a line matching a predicate until a deadline.
///
/// Lines that did not match a wait stay pending, so a later wait for another kind of line
/// still sees them, in order. Every line ever read is kept for failure messages.
pub struct LineReader {
    name: String,
    rx: Receiver<String>,
    pending: VecDeque<String>,
    history: Vec<String>,
    eof: bool,
}

/// Why `LineReader::wait_for` returned no line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitError {
    /// The deadline passed.
    Timeout,
    /// The stream ended (the child closed its stdout or exited).
    Eof,
}

impl LineReader {
    /// Starts a thread reading `stream` into a channel.
    pub fn spawn<R: Read + Send + 'static>(name: impl Into<String>, stream: R) -> LineReader {
        let name = name.into();
        let (tx, rx) = mpsc::channel();
        thread::Builder::new()
            .name(format!("lines-{name}"))
            .spawn(move || {
                let mut reader = BufReader::new(stream);
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    match reader.read_until(b'\n', &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let line = String::from_utf8_lossy(&buf);
                            let line = line.trim_end_matches(['\n', '\r']).to_string();
                            if tx.send(line).is_err() {
                                break;
                            }
                        }
                    }
                }
            })
            .expect("spawn line reader thread");
        LineReader {
            name,
            rx,
            pending: VecDeque::new(),
            history: Vec::new(),
            eof: false,
        }
    }

    /// The name given at creation (used in messages).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every line read so far, matched or not.
    pub fn history(&self) -> &[String] {
        &self.history
    }

    /// Waits for the first (pending or new) line for which `pred` holds, at most `timeout`.
    /// The matching line is consumed; the others stay pending.
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&str) -> bool,
    ) -> Result<String, WaitError> {
        if let Some(i) = self.pending.iter().position(|l| pred(l)) {
            return Ok(self.pending.remove(i).expect("index from position"));
        }
        let deadline = Instant::now() + timeout;
        loop {
            if self.eof {
                return Err(WaitError::Eof);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(WaitError::Timeout);
            }
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.history.push(line.clone());
                    if pred(&line) {
                        return Ok(line);
                    }
                    self.pending.push_back(line);
                }
                Err(RecvTimeoutError::Timeout) => return Err(WaitError::Timeout),
                Err(RecvTimeoutError::Disconnected) => self.eof = true,
            }
        }
    }

    /// Like `wait_for`, but panics with the lines seen so far when no line matches.
    pub fn expect(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl FnMut(&str) -> bool,
    ) -> String {
        let started = Instant::now();
        match self.wait_for(timeout, pred) {
            Ok(line) => line,
            Err(e) => panic!(
                "{}: no line {what} after {:.1?} ({e:?}); lines so far:\n{}",
                self.name,
                started.elapsed(),
                indent(&self.history)
            ),
        }
    }

    /// Waits the whole `timeout` and panics if a line matching `pred` arrives (or is pending).
    pub fn expect_none(&mut self, what: &str, timeout: Duration, pred: impl FnMut(&str) -> bool) {
        match self.wait_for(timeout, pred) {
            Ok(line) => panic!(
                "{}: unexpected line {what}: {line:?}; lines so far:\n{}",
                self.name,
                indent(&self.history)
            ),
            Err(WaitError::Timeout) | Err(WaitError::Eof) => {}
        }
    }

    /// Reads until the stream ends or `timeout` passes; returns every line of the history.
    pub fn drain(&mut self, timeout: Duration) -> Vec<String> {
        let _ = self.wait_for(timeout, |_| false);
        self.history.clone()
    }
}

fn indent(lines: &[String]) -> String {
    if lines.is_empty() {
        return "    (none)".to_string();
    }
    lines
        .iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A running child process: stdout through a `LineReader`, stderr collected in the
/// background (the last lines are printed if the test panics). Killed by pid on drop.
pub struct Proc {
    name: String,
    child: Child,
    exited: Option<ExitStatus>,
    pub out: LineReader,
    err: Arc<Mutex<VecDeque<String>>>,
    err_thread: Option<thread::JoinHandle<()>>,
}

/// What a finished short-lived command left behind.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
}

impl Finished {
    /// Panics with the output unless the command exited with status 0.
    pub fn assert_success(&self, what: &str) -> &Self {
        assert!(
            self.status.success(),
            "{what} failed: {}\nstdout:\n{}\nstderr:\n{}",
            self.status,
            indent(&self.stdout),
            indent(&self.stderr)
        );
        self
    }
}

impl Proc {
    /// Spawns `cmd` with stdin closed and stdout/stderr piped.
    pub fn spawn(name: impl Into<String>, mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::null());
        Proc::spawn_io(name.into(), cmd)
    }

    /// As [`Proc::spawn`], with stdin a pipe the test writes to (and closes by dropping).
    pub fn spawn_with_stdin(
        name: impl Into<String>,
        mut cmd: Command,
    ) -> (Proc, std::process::ChildStdin) {
        cmd.stdin(Stdio::piped());
        let mut p = Proc::spawn_io(name.into(), cmd);
        let stdin = p.child.stdin.take().expect("piped stdin");
        (p, stdin)
    }

    /// Spawns `cmd` (stdin already set) with stdout/stderr piped.
    fn spawn_io(name: String, mut cmd: Command) -> Proc {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: cannot spawn {cmd:?}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let out = LineReader::spawn(name.clone(), stdout);
        let err = Arc::new(Mutex::new(VecDeque::new()));
        let err2 = Arc::clone(&err);
        let err_thread = thread::Builder::new()
            .name(format!("stderr-{name}"))
            .spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let mut q = err2.lock().unwrap_or_else(|p| p.into_inner());
                    if q.len() == STDERR_KEEP {
                        q.pop_front();
                    }
                    q.push_back(line);
                }
            })
            .expect("spawn stderr thread");
        Proc {
            name,
            child,
            exited: None,
            out,
            err,
            err_thread: Some(err_thread),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines the child wrote to stderr so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.err
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Waits at most `timeout` for the child to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.exited {
            return Some(status);
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.exited = Some(status);
                    return Some(status);
                }
                Ok(None) => {}
                Err(e) => panic!("{}: wait failed: {e}", self.name),
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits at most `timeout` for the child to exit and collects all its output; panics
    /// (after killing it) if it is still running at the deadline.
    pub fn finish(mut self, timeout: Duration) -> Finished {
        let Some(status) = self.wait_exit(timeout) else {
            self.kill();
            panic!(
                "{}: still running after {timeout:?}; stdout:\n{}\nstderr:\n{}",
                self.name,
                indent(&self.out.drain(Duration::from_millis(200))),
                indent(&self.stderr_lines())
            );
        };
        // The pipes close when the child exits (unless it left a grandchild holding them).
        let stdout = self.out.drain(Duration::from_secs(2));
        if let Some(t) = self.err_thread.take() {
            let deadline = Instant::now() + Duration::from_secs(2);
            while !t.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
        Finished {
            status,
            stdout,
            stderr: self.stderr_lines(),
        }
    }

    /// Kills the child (SIGKILL to its pid) and reaps it. Idempotent.
    pub fn kill(&mut self) {
        if self.exited.is_some() {
            return;
        }
        let _ = self.child.kill();
        if let Ok(status) = self.child.wait() {
            self.exited = Some(status);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if thread::panicking() {
            eprintln!(
                "---- {} (pid {}) stdout:\n{}\n---- {} stderr (last lines):\n{}",
                self.name,
                self.child.id(),
                indent(self.out.history()),
                self.name,
                indent(&self.stderr_lines())
            );
        }
    }
}

/// Runs `cmd` to completion with a deadline; panics if it does not finish in time.
pub fn run(name: &str, cmd: Command, timeout: Duration) -> Finished {
    Proc::spawn(name, cmd).finish(timeout)
}

/// A running `rendezvous serve`, started and waited for until it printed its address.
/// Killed by pid on drop.
pub struct Server {
    /// The address from `listening udp ADDR:PORT` (the real port when asked for port 0).
    pub addr: SocketAddr,
    pub proc: Proc,
}

impl Server {
    /// `rendezvous serve --listen 127.0.0.1:0 --memory-only EXTRA...` on loopback.
    pub fn start(extra: &[&str]) -> Server {
        let mut cmd = bin();
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--memory-only"])
            .args(extra);
        Server::spawn("server", cmd)
    }

    /// Starts any prepared command that runs the server (for example inside a network
    /// namespace) and waits for its `listening udp ADDR:PORT` line.
    /// As [`Server::spawn`], but `Err(stderr)` when the server exits before it listens
    /// (for example because its port was taken), so the caller can retry; panics on a
    /// timeout.
    pub fn try_spawn(name: &str, cmd: Command) -> Result<Server, Vec<String>> {
        let mut proc = Proc::spawn(name, cmd);
        match proc
            .out
            .wait_for(STARTUP_TIMEOUT, |l| l.starts_with("listening udp "))
        {
            Ok(line) => {
                let addr: SocketAddr = line["listening udp ".len()..]
                    .trim()
                    .parse()
                    .unwrap_or_else(|e| panic!("{name}: bad address in {line:?}: {e}"));
                Ok(Server { addr, proc })
            }
            Err(WaitError::Eof) => {
                let _ = proc.wait_exit(Duration::from_secs(2));
                Err(proc.stderr_lines())
            }
            Err(WaitError::Timeout) => panic!(
                "{name}: no `listening udp` within {STARTUP_TIMEOUT:?}; stderr: {:?}",
                proc.stderr_lines()
            ),
        }
    }

    pub fn spawn(name: &str, cmd: Command) -> Server {
        let mut proc = Proc::spawn(name, cmd);
        let line = match proc
            .out
            .wait_for(STARTUP_TIMEOUT, |l| l.starts_with("listening udp "))
        {
            Ok(line) => line,
            Err(e) => {
                let status = proc.wait_exit(Duration::ZERO);
                panic!(
                    "{name}: no `listening udp ADDR:PORT` line within {STARTUP_TIMEOUT:?} \
                     ({e:?}, exit status {status:?}); stdout:\n{}\nstderr:\n{}",
                    indent(proc.out.history()),
                    indent(&proc.stderr_lines())
                );
            }
        };
        let addr_text = line["listening udp ".len()..].trim();
        let addr: SocketAddr = addr_text
            .parse()
            .unwrap_or_else(|e| panic!("{name}: bad address in {line:?}: {e}"));
        Server { addr, proc }
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }
}

/// A client identity made with `rendezvous identity new --out DIR` in a temporary
/// directory, removed on drop.
pub struct Identity {
    pub dir: std::path::PathBuf,
    pub fingerprint: String,
    _tmp: tempfile::TempDir,
}

impl Identity {
    pub fn new(name: &str) -> Identity {
        let tmp = tempfile::Builder::new()
            .prefix(&format!("rdv-id-{name}-"))
            .tempdir()
            .expect("temp dir");
        let dir = tmp.path().join(name);
        let mut cmd = bin();
        cmd.args(["identity", "new", "--out"]).arg(&dir);
        let done = run(&format!("identity-{name}"), cmd, Duration::from_secs(20));
        done.assert_success("rendezvous identity new");
        let fingerprint = done
            .stdout
            .iter()
            .flat_map(|l| l.split(|c: char| !c.is_ascii_hexdigit()))
            .find(|t| t.len() == 64)
            .unwrap_or_else(|| panic!("no 64-hex fingerprint in {:?}", done.stdout))
            .to_ascii_lowercase();
        for f in ["cert.pem", "key.pem"] {
            assert!(dir.join(f).is_file(), "identity new did not write {f}");
        }
        Identity {
            dir,
            fingerprint,
            _tmp: tmp,
        }
    }

    pub fn dir_arg(&self) -> &OsStr {
        self.dir.as_os_str()
    }
}

/// The value of `key=VALUE` in a space-separated line such as
/// `registered fingerprint=.. public=203.0.113.2:4000 keepalive=2 epoch=1`.
/// `text=` is special: it runs to the end of the line.
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let tag = format!("{key}=");
    let mut start = None;
    if line.starts_with(&tag) {
        start = Some(tag.len());
    } else if let Some(i) = line.find(&format!(" {tag}")) {
        start = Some(i + 1 + tag.len());
    }
    let rest = &line[start?..];
    if key == "text" {
        return Some(rest);
    }
    Some(rest.split(' ').next().unwrap_or(""))
}

impl Proc {
    /// Waits at most `timeout` for a line of the child's stderr for which `pred` holds and
    /// returns it; panics with the lines seen when none comes (or the child exits first).
    /// For tools that report readiness on stderr (`tcpdump: listening on ...`).
    pub fn expect_stderr(
        &mut self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.stderr_lines().into_iter().find(|l| pred(l)) {
                return line;
            }
            let exited = self.wait_exit(Duration::ZERO);
            if exited.is_some() {
                // Give the stderr thread a moment to read what the child wrote last.
                thread::sleep(Duration::from_millis(100));
                if let Some(line) = self.stderr_lines().into_iter().find(|l| pred(l)) {
                    return line;
                }
            }
            if exited.is_some() || Instant::now() >= deadline {
                panic!(
                    "{}: no stderr line {what} within {timeout:?} (exit status {exited:?}); \
                     stderr:\n{}",
                    self.name,
                    indent(&self.stderr_lines())
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Waits at most `timeout` for the next datagram at client `c` matching `pred`, skipping
/// others; panics naming `what` and what came instead.
pub fn next_arrival(
    c: &mut rendezvous::client::Client,
    what: &str,
    timeout: Duration,
    mut pred: impl FnMut(&rendezvous::client::Incoming) -> bool,
) -> rendezvous::client::Incoming {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        if let Some(m) = c.recv(deadline - Instant::now()).expect("recv") {
            if pred(&m) {
                return m;
            }
            seen.push(m);
        }
    }
    panic!("no {what} within {timeout:?}; got instead: {seen:?}");
}

/// A loopback port free for both UDP and TCP right now (a server is then started on it;
/// another socket may still take it first, which callers retry).
pub fn free_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind probe");
        let port = udp.local_addr().expect("probe address").port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// `rendezvous status --server ADDR`: its `key=value` lines (it must succeed).
pub fn status_lines(addr: SocketAddr) -> Vec<String> {
    let mut cmd = bin();
    cmd.args(["status", "--server", &addr.to_string()]);
    let done = run("status", cmd, Duration::from_secs(20));
    done.assert_success("status");
    done.stdout
}

/// The value of `key=` in status `lines`; panics when there is none.
pub fn status_field(lines: &[String], key: &str) -> String {
    lines
        .iter()
        .find_map(|l| field(l, key).map(str::to_string))
        .unwrap_or_else(|| panic!("no {key}= in {lines:?}"))
}

/// `SqliteStore::open(dir)`, retried while the directory is "in use" (for at most 10 s):
/// a store just dropped can still be locked for a moment, because a process another test
/// forks at that instant shares the lock's open file until it execs (close-on-exec).
pub fn open_sqlite(dir: &std::path::Path) -> rendezvous::store::SqliteStore {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match rendezvous::store::SqliteStore::open(dir) {
            Ok(s) => return s,
            Err(e) if Instant::now() < deadline && e.to_string().contains("in use") => {
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("cannot open the store in {}: {e}", dir.display()),
        }
    }
}
