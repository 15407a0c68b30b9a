//! A small HTTP/1.1 file server on 127.0.0.1 with programmable faults.
//!
//! It serves files under `/org/model/resolve/main/`, honours `Range: bytes=N-`,
//! closes every connection after one response, and logs each request.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

const PREFIX: &str = "/org/model/resolve/main/";

/// A misbehaviour for one response.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Answer with this status and an empty body.
    Status(u16),
    /// Announce the full body, send this many bytes of it, then close.
    CutAfter(usize),
    /// Serve the file with one byte flipped.
    Corrupt,
    /// Serve the file as if it had only this many bytes.
    Truncate(usize),
    /// Answer a range request with the whole file (200).
    IgnoreRange,
    /// Answer with the whole file (200) even to a range request, and close
    /// after this many bytes of it.
    CutIgnoringRange(usize),
    /// Send the body in pieces of `bytes`, pausing `pause_ms` before each.
    Slow { bytes: usize, pause_ms: u64 },
}

/// One request the server received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The file name under the artifact's base URL.
    pub file: String,
    /// The start of `Range: bytes=N-`, if any.
    pub range: Option<u64>,
}

#[derive(Default)]
struct State {
    files: BTreeMap<String, Vec<u8>>,
    once: HashMap<String, VecDeque<Fault>>,
    always: HashMap<String, Fault>,
    log: Vec<Request>,
}

/// A running server; it lives until the test process ends.
pub struct Server {
    address: String,
    state: Arc<Mutex<State>>,
}

impl Server {
    /// Serves `files` on a fresh port.
    pub fn start(files: BTreeMap<String, Vec<u8>>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let state = Arc::new(Mutex::new(State { files, ..State::default() }));
        let shared = Arc::clone(&state);
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = Arc::clone(&shared);
                thread::spawn(move || handle(stream, &state));
            }
        });
        Server { address, state }
    }

    /// The artifact's URL, without `resolve/main/` (the loader adds it).
    pub fn url(&self) -> String {
        format!("http://{}/org/model", self.address)
    }

    /// The resolved base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}{PREFIX}", self.address)
    }

    /// The cache folder name of this server's host and port.
    pub fn cache_host(&self) -> String {
        self.address.replace(':', "%3A")
    }

    /// Applies `fault` to the next request for `file` (faults queue up).
    pub fn fail_once(&self, file: &str, fault: Fault) {
        self.state.lock().unwrap().once.entry(file.to_string()).or_default().push_back(fault);
    }

    /// Applies `fault` to every request for `file` without a queued fault.
    pub fn fail_always(&self, file: &str, fault: Fault) {
        self.state.lock().unwrap().always.insert(file.to_string(), fault);
    }

    /// Removes every fault.
    pub fn heal(&self) {
        let mut state = self.state.lock().unwrap();
        state.once.clear();
        state.always.clear();
    }

    /// Serves `bytes` as `file` from now on (an artifact updated upstream).
    pub fn replace(&self, file: &str, bytes: Vec<u8>) {
        self.state.lock().unwrap().files.insert(file.to_string(), bytes);
    }

    /// Stops serving `file` (404 from now on).
    pub fn remove(&self, file: &str) {
        self.state.lock().unwrap().files.remove(file);
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().log.clone()
    }

    /// The requests for `file`.
    pub fn requests_for(&self, file: &str) -> Vec<Request> {
        self.requests().into_iter().filter(|r| r.file == file).collect()
    }

    /// Forgets the requests so far.
    pub fn clear_log(&self) {
        self.state.lock().unwrap().log.clear();
    }
}

fn handle(mut stream: TcpStream, state: &Mutex<State>) {
    let Some((path, range)) = read_request(&stream) else { return };
    let file = path.strip_prefix(PREFIX).unwrap_or(&path).to_string();
    let (fault, data) = {
        let mut state = state.lock().unwrap();
        state.log.push(Request { file: file.clone(), range });
        let fault = state
            .once
            .get_mut(&file)
            .and_then(VecDeque::pop_front)
            .or_else(|| state.always.get(&file).copied());
        (fault, state.files.get(&file).cloned())
    };
    if let Some(Fault::Status(code)) = fault {
        return respond(&mut stream, code, &[], &[], None);
    }
    let Some(mut data) = data else { return respond(&mut stream, 404, &[], b"not found", None) };
    match fault {
        Some(Fault::Truncate(len)) => data.truncate(len),
        Some(Fault::Corrupt) if !data.is_empty() => {
            let middle = data.len() / 2;
            data[middle] ^= 0xFF;
        }
        _ => {}
    }
    let cut = match fault {
        Some(Fault::CutAfter(n) | Fault::CutIgnoringRange(n)) => Some(n),
        _ => None,
    };
    let pace = match fault {
        Some(Fault::Slow { bytes, pause_ms }) => Some((bytes, pause_ms)),
        _ => None,
    };
    let answer = |stream: &mut TcpStream, status, headers: &[String], body: &[u8], cut| match pace {
        Some((bytes, pause_ms)) => respond_slowly(stream, status, headers, body, bytes, pause_ms),
        None => respond(stream, status, headers, body, cut),
    };
    let len = data.len() as u64;
    match range.filter(|_| !matches!(fault, Some(Fault::IgnoreRange | Fault::CutIgnoringRange(_))))
    {
        Some(start) if start >= len => {
            answer(&mut stream, 416, &[format!("Content-Range: bytes */{len}")], &[], None)
        }
        Some(start) => {
            let header = format!("Content-Range: bytes {start}-{}/{len}", len - 1);
            answer(&mut stream, 206, &[header], &data[start as usize..], cut)
        }
        None => answer(&mut stream, 200, &[], &data, cut),
    }
}

/// Reads the request head: the path and the start of a `Range: bytes=N-`.
fn read_request(stream: &TcpStream) -> Option<(String, Option<u64>)> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_string();
    let mut range = None;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            return Some((path, range));
        }
        let (name, value) = header.split_once(':')?;
        if name.eq_ignore_ascii_case("range") {
            range = value.trim().strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok();
        }
    }
}

/// The head of a response announcing all of `body`.
fn head(status: u16, headers: &[String], body: &[u8]) -> String {
    let mut head =
        format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    for header in headers {
        head.push_str(header);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head
}

/// Writes a whole response, its body in pieces of `bytes` with a pause before each.
fn respond_slowly(
    stream: &mut TcpStream,
    status: u16,
    headers: &[String],
    body: &[u8],
    bytes: usize,
    pause_ms: u64,
) {
    let _ = stream.write_all(head(status, headers, body).as_bytes());
    for piece in body.chunks(bytes.max(1)) {
        thread::sleep(std::time::Duration::from_millis(pause_ms));
        if stream.write_all(piece).and_then(|()| stream.flush()).is_err() {
            return;
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
}

/// Writes a response announcing all of `body`; with `cut`, sends only that
/// many bytes of it and closes the connection.
fn respond(
    stream: &mut TcpStream,
    status: u16,
    headers: &[String],
    body: &[u8],
    cut: Option<usize>,
) {
    let head = head(status, headers, body);
    let sent = &body[..cut.unwrap_or(body.len()).min(body.len())];
    // The client may hang up early (e.g. on a size it rejects): ignore write errors.
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(sent))
        .and_then(|()| stream.flush());
    let _ = stream.shutdown(Shutdown::Both);
}
