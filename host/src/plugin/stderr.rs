//! A plugin's stderr: forwarded to the host log, with the tail kept so that a trap can be
//! explained by the panic message the guest printed just before it.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// How much of the stderr tail is kept.
const TAIL: usize = 8 << 10;

/// The stderr of one instance. Writes never fail (a pipe that filled up would make the guest
/// trap), and only the last [`TAIL`] bytes are kept.
#[derive(Clone, Default)]
pub struct StderrCapture {
    processor_id: Arc<str>,
    tail: Arc<Mutex<Vec<u8>>>,
}

impl StderrCapture {
    pub fn new(processor_id: &str) -> Self {
        StderrCapture { processor_id: processor_id.into(), tail: Arc::default() }
    }

    fn append(&self, bytes: &[u8]) {
        tracing::debug!(processor = %self.processor_id, "plugin stderr: {}", String::from_utf8_lossy(bytes).trim_end());
        let mut tail = self.tail.lock().unwrap();
        tail.extend_from_slice(bytes);
        if tail.len() > TAIL {
            let excess = tail.len() - TAIL;
            tail.drain(..excess);
        }
    }

    /// The panic message in the tail (`thread ... panicked at FILE:LINE:\nMESSAGE`), or else its
    /// last line, if there is anything.
    pub fn last_message(&self) -> Option<String> {
        let tail = self.tail.lock().unwrap();
        let text = String::from_utf8_lossy(&tail);
        let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        if let Some(start) = lines.iter().rposition(|l| l.contains("panicked at")) {
            let message: Vec<&str> =
                lines[start + 1..].iter().copied().take_while(|l| !l.starts_with("note:")).collect();
            if !message.is_empty() {
                return Some(message.join(" "));
            }
        }
        lines.iter().rev().find(|l| !l.starts_with("note:")).map(|l| l.to_string())
    }
}

impl IsTerminal for StderrCapture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for StderrCapture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for StderrCapture {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 << 10)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for StderrCapture {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for StderrCapture {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_panic_message_is_found_in_the_tail() {
        let stderr = StderrCapture::new("p");
        stderr.append(b"some earlier output\n");
        stderr.append(b"\nthread '<unnamed>' panicked at src/lib.rs:18:17:\npoison record at index 3\n");
        stderr.append(b"note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n");
        assert_eq!(stderr.last_message().as_deref(), Some("poison record at index 3"));
    }

    #[test]
    fn the_tail_is_bounded() {
        let stderr = StderrCapture::new("p");
        for _ in 0..10_000 {
            stderr.append(b"a line of chatter\n");
        }
        assert!(stderr.tail.lock().unwrap().len() <= TAIL);
        assert_eq!(stderr.last_message().as_deref(), Some("a line of chatter"));
    }
}
