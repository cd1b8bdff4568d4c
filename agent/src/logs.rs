//! Bounded per-workload logs with live following.
//!
//! A chatty workload must never grow the agent's memory without bound, so each workload keeps
//! its most recent lines up to a line and a byte budget; followers get new lines through a
//! broadcast channel and, if they fall behind, skip ahead rather than slow the workload down.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::broadcast;

use crate::api::{LogLine, LogStream};

pub const MAX_LINES_PER_WORKLOAD: usize = 5_000;
pub const MAX_BYTES_PER_WORKLOAD: usize = 1 << 20;
/// Longer lines are cut, so one line cannot take a workload's whole budget.
pub const MAX_LINE_BYTES: usize = 16 << 10;

#[derive(Default)]
struct Ring {
    lines: VecDeque<LogLine>,
    bytes: usize,
}

impl Ring {
    fn push(&mut self, line: LogLine) {
        self.bytes += line.text.len();
        self.lines.push_back(line);
        while self.lines.len() > MAX_LINES_PER_WORKLOAD || self.bytes > MAX_BYTES_PER_WORKLOAD {
            match self.lines.pop_front() {
                Some(old) => self.bytes -= old.text.len(),
                None => break,
            }
        }
    }
}

/// Every workload's recent output on this node.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<BTreeMap<String, Ring>>>,
    live: broadcast::Sender<LogLine>,
}

impl Default for LogStore {
    fn default() -> Self {
        Self::new()
    }
}

impl LogStore {
    pub fn new() -> Self {
        let (live, _) = broadcast::channel(1024);
        LogStore {
            inner: Arc::default(),
            live,
        }
    }

    pub fn append(&self, workload: &str, stream: LogStream, text: &str) {
        let mut text = text.trim_end_matches(['\n', '\r']).to_string();
        if text.len() > MAX_LINE_BYTES {
            let mut cut = MAX_LINE_BYTES;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str(" [line truncated]");
        }
        let line = LogLine {
            workload: workload.to_string(),
            time_ms: now_ms(),
            stream,
            text,
        };
        let mut inner = self.inner.lock().expect("log store lock");
        inner
            .entry(workload.to_string())
            .or_default()
            .push(line.clone());
        // Sent under the lock so a follower's snapshot and its live lines neither overlap nor
        // leave a gap. No followers is the common case, not an error.
        let _ = self.live.send(line);
    }

    /// The last `tail` lines (all kept lines when `None`) of every workload that `selects`
    /// accepts, oldest first.
    pub fn snapshot(&self, selects: impl Fn(&str) -> bool, tail: Option<usize>) -> Vec<LogLine> {
        self.snapshot_and_subscribe(selects, tail).0
    }

    /// [`LogStore::snapshot`], plus a receiver of every line appended after it.
    pub fn snapshot_and_subscribe(
        &self,
        selects: impl Fn(&str) -> bool,
        tail: Option<usize>,
    ) -> (Vec<LogLine>, broadcast::Receiver<LogLine>) {
        let inner = self.inner.lock().expect("log store lock");
        let live = self.live.subscribe();
        let mut lines: Vec<LogLine> = inner
            .iter()
            .filter(|(workload, _)| selects(workload))
            .flat_map(|(_, ring)| {
                let skip = tail.map_or(0, |t| ring.lines.len().saturating_sub(t));
                ring.lines.iter().skip(skip).cloned()
            })
            .collect();
        lines.sort_by_key(|l| l.time_ms);
        if let Some(tail) = tail {
            let excess = lines.len().saturating_sub(tail);
            lines.drain(..excess);
        }
        (lines, live)
    }

    /// Drops a workload's log once the workload itself is gone for good.
    pub fn forget(&self, workload: &str) {
        self.inner.lock().expect("log store lock").remove(workload);
    }

    pub fn workloads(&self) -> Vec<String> {
        self.inner
            .lock()
            .expect("log store lock")
            .keys()
            .cloned()
            .collect()
    }
}

/// Turns a byte stream from a workload into log lines, cutting overlong lines so a stream
/// without newlines cannot grow memory without bound.
pub struct LineWriter {
    logs: LogStore,
    workload: String,
    stream: LogStream,
    pending: Vec<u8>,
}

impl LineWriter {
    pub fn new(logs: LogStore, workload: String, stream: LogStream) -> Self {
        LineWriter {
            logs,
            workload,
            stream,
            pending: Vec::new(),
        }
    }

    pub fn write(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(end) = self.pending[start..].iter().position(|&b| b == b'\n') {
            self.emit(start, start + end);
            start += end + 1;
        }
        self.pending.drain(..start);
        if self.pending.len() > MAX_LINE_BYTES {
            self.emit(0, self.pending.len());
            self.pending.clear();
        }
    }

    /// Logs what is left of an unfinished last line.
    pub fn finish(self) {
        if !self.pending.is_empty() {
            self.emit(0, self.pending.len());
        }
    }

    fn emit(&self, from: usize, to: usize) {
        let text = String::from_utf8_lossy(&self.pending[from..to]);
        self.logs.append(&self.workload, self.stream, &text);
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workload_keeps_only_its_most_recent_lines() {
        let logs = LogStore::new();
        for i in 0..(MAX_LINES_PER_WORKLOAD + 10) {
            logs.append("a/b/0", LogStream::Stdout, &format!("line {i}"));
        }
        let all = logs.snapshot(|_| true, None);
        assert_eq!(all.len(), MAX_LINES_PER_WORKLOAD);
        assert_eq!(
            all.last().unwrap().text,
            format!("line {}", MAX_LINES_PER_WORKLOAD + 9)
        );
    }

    #[test]
    fn the_byte_budget_holds_for_long_lines() {
        let logs = LogStore::new();
        let long = "x".repeat(MAX_LINE_BYTES * 4);
        for _ in 0..200 {
            logs.append("a/b/0", LogStream::Stdout, &long);
        }
        let bytes: usize = logs
            .snapshot(|_| true, None)
            .iter()
            .map(|l| l.text.len())
            .sum();
        assert!(bytes <= MAX_BYTES_PER_WORKLOAD);
    }

    #[test]
    fn tail_selects_the_last_lines_of_the_selected_workloads() {
        let logs = LogStore::new();
        for i in 0..10 {
            logs.append("a/b/0", LogStream::Stdout, &format!("{i}"));
            logs.append("a/c/0", LogStream::Stdout, &format!("other {i}"));
        }
        let tail = logs.snapshot(|w| w == "a/b/0", Some(3));
        let texts: Vec<_> = tail.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["7", "8", "9"]);
    }

    #[test]
    fn line_writer_splits_across_chunks_and_cuts_runaway_lines() {
        let logs = LogStore::new();
        let mut lines = LineWriter::new(logs.clone(), "w".into(), LogStream::Stdout);
        lines.write(b"one\ntw");
        lines.write(b"o\nthree");
        lines.write(&vec![b'x'; MAX_LINE_BYTES + 1]);
        lines.write(b"tail");
        lines.finish();
        let texts: Vec<String> = logs
            .snapshot(|_| true, None)
            .into_iter()
            .map(|l| l.text)
            .collect();
        assert_eq!(texts[..2], ["one", "two"]);
        assert!(texts[2].starts_with("threexxx") && texts[2].ends_with("[line truncated]"));
        assert_eq!(texts[3], "tail");
        assert_eq!(texts.len(), 4);
    }
}
