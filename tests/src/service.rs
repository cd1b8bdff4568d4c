//! A client of a replicated HTTP service, as a load balancer would be: it requests the
//! service continuously, each request from one of the replicas the cluster reports ready
//! (refreshed from `get workloads` every 300 ms), round-robin, and records every answer and
//! every failure. Rolling-update tests assert that no request failed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One HTTP/1.0 GET of `/index.html`; the body, or why it failed.
pub fn get(address: SocketAddr) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))
        .map_err(|e| format!("connect {address}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /index.html HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .map_err(|e| format!("write {address}: {e}"))?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| format!("read {address}: {e}"))?;
    match answer.split_once("\r\n\r\n") {
        Some((head, body))
            if head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200") =>
        {
            Ok(body.trim().to_string())
        }
        _ => Err(format!("{address} answered {answer:?}")),
    }
}

/// One HTTP/1.1 `GET path` with `Host: host` on a fresh connection: the status line and the
/// body (of a response that is not chunked), or why it failed.
pub fn request(address: SocketAddr, host: &str, path: &str) -> Result<(String, String), String> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))
        .map_err(|e| format!("connect {address}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write {address}: {e}"))?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| format!("read {address}: {e}"))?;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.lines().next().unwrap_or_default().to_string();
    Ok((status, body.trim().to_string()))
}

/// What the client saw.
#[derive(Debug, Default)]
pub struct Seen {
    pub served: Vec<String>,
    pub failed: Vec<String>,
    /// The fewest replicas the cluster reported ready at any refresh.
    pub fewest_ready: Option<usize>,
}

/// Requests every 20 ms until [`Client::finish`].
pub struct Client {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Client {
    /// A client of application `app`'s replicas; `address` says where a ready replica (as
    /// `get workloads -o json` shows it) serves.
    pub fn start(
        config: PathBuf,
        app: &str,
        address: impl Fn(&serde_json::Value) -> Option<SocketAddr> + Send + 'static,
    ) -> Client {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let ready: Arc<Mutex<Vec<SocketAddr>>> = Arc::default();
        let app = app.to_string();
        let refresh = {
            let (stop, seen, ready) = (stop.clone(), seen.clone(), ready.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let run = crate::gossipctl(&["get", "workloads", "-o", "json"], &config);
                    if run.code == 0 {
                        let mut addresses: Vec<SocketAddr> = run
                            .json()
                            .as_array()
                            .expect("a list of workloads")
                            .iter()
                            .filter(|w| w["app"] == app.as_str() && w["state"] == "ready")
                            .filter_map(&address)
                            .collect();
                        addresses.sort();
                        addresses.dedup();
                        let mut seen = seen.lock().unwrap();
                        let fewest = seen
                            .fewest_ready
                            .map_or(addresses.len(), |f| f.min(addresses.len()));
                        seen.fewest_ready = Some(fewest);
                        *ready.lock().unwrap() = addresses;
                    }
                    std::thread::sleep(Duration::from_millis(300));
                }
            })
        };
        let requests = {
            let (stop, seen, ready) = (stop.clone(), seen.clone(), ready.clone());
            std::thread::spawn(move || {
                let mut next = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    let target = {
                        let ready = ready.lock().unwrap();
                        (!ready.is_empty()).then(|| ready[next % ready.len()])
                    };
                    next += 1;
                    if let Some(target) = target {
                        let answer = get(target);
                        let mut seen = seen.lock().unwrap();
                        match answer {
                            Ok(body) => seen.served.push(body),
                            Err(why) => seen.failed.push(why),
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        Client {
            stop,
            seen,
            threads: vec![refresh, requests],
        }
    }

    pub fn finish(self) -> Seen {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads {
            thread.join().unwrap();
        }
        Arc::try_unwrap(self.seen)
            .expect("the threads are gone")
            .into_inner()
            .unwrap()
    }
}
