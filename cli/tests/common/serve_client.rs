//! A raw HTTP/1.1 client for `mlc-wgpu serve` and the server process itself,
//! shared by the serve test files (included with `#[path]`, so test files
//! that do not start a server do not compile it).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// The server process, stopped when the test ends however it ends.
pub struct Server {
    child: Child,
    pub address: String,
}

impl Server {
    /// Starts `mlc-wgpu serve` on the CPU engine with an ephemeral port and
    /// waits until it listens.
    pub fn start(model: &Path) -> Server {
        Server::start_with(model, &[])
    }

    /// [`Server::start`] with more arguments for `serve`.
    pub fn start_with(model: &Path, args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mlc-wgpu"))
            .args(["serve", "--device", "cpu", "--port", "0", "--model"])
            .arg(model)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start mlc-wgpu serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let address = line
            .strip_prefix("listening on http://")
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected first line from serve: {line:?}"))
            .to_string();
        Server { child, address }
    }

    /// Whether the process is still running (it must survive every fault a client can cause).
    #[allow(dead_code)] // Not every test file that starts a server asks.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("poll mlc-wgpu serve").is_none()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response: status, lower-cased headers, body (chunked encoding undone).
pub struct Reply {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|error| panic!("{error}: {}", self.body))
    }

    /// The `data:` payloads of a server-sent event stream.
    pub fn events(&self) -> Vec<String> {
        self.body
            .split("\n\n")
            .filter_map(|event| event.strip_prefix("data: "))
            .map(str::to_string)
            .collect()
    }
}

/// Opens a connection and writes one HTTP/1.1 request with `body` as it is
/// (which may be anything, malformed JSON included); the caller reads the answer.
pub fn send_request(address: &str, method: &str, path: &str, body: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(address).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    // One write, so that the server sees the whole request at once.
    stream.write_all(&[head.as_bytes(), body].concat()).unwrap();
    stream
}

/// One request with a raw body, on its own connection.
pub fn http_bytes(address: &str, method: &str, path: &str, body: &[u8]) -> Reply {
    let mut stream = send_request(address, method, path, body);
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, rest) =
        raw.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP head in {raw:?}"));
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let headers = head.to_ascii_lowercase();
    let body = if headers.contains("transfer-encoding: chunked") {
        unchunk(rest)
    } else {
        rest.to_string()
    };
    Reply { status, headers, body }
}

/// One request with a JSON body (or none), on its own connection.
pub fn http(address: &str, method: &str, path: &str, body: Option<&Value>) -> Reply {
    http_bytes(address, method, path, body.map(Value::to_string).unwrap_or_default().as_bytes())
}

/// Undoes chunked transfer encoding.
fn unchunk(mut rest: &str) -> String {
    let mut body = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(size, 16).unwrap();
        if size == 0 {
            return body;
        }
        body.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}
