//! The live status line of `meshhost run` on a terminal: one line at the bottom of stderr,
//! redrawn every second (records/s in and out, dead letters, total lag), which log lines
//! scroll above. Off when stderr is not a terminal or logs are JSON; the run then logs a
//! progress line every 30 s instead.

use std::io::Write;
use std::sync::Mutex;

/// The line now shown, if any.
static STATUS: Mutex<Option<String>> = Mutex::new(None);

/// ANSI: carriage return, then erase the line.
const CLEAR: &[u8] = b"\r\x1b[2K";

/// Show `line` as the status line (replacing the one shown).
pub fn show(line: String) {
    let mut status = STATUS.lock().expect("never poisoned");
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(CLEAR);
    let _ = stderr.write_all(line.as_bytes());
    let _ = stderr.flush();
    *status = Some(line);
}

/// Remove the status line (at the end of a run).
pub fn clear() {
    let mut status = STATUS.lock().expect("never poisoned");
    if status.take().is_some() {
        let mut stderr = std::io::stderr().lock();
        let _ = stderr.write_all(CLEAR);
        let _ = stderr.flush();
    }
}

/// The status line's text.
pub fn format(in_rate: f64, out_rate: f64, dead_rate: f64, lag: Option<i64>) -> String {
    let lag = lag.map_or_else(|| "lag ?".to_string(), |lag| format!("lag {lag}"));
    format!("▶ {in_rate:.0} records/s in · {out_rate:.0}/s out · {dead_rate:.1}/s to dead letters · {lag}")
}

/// Stderr for the log: a log line erases the status line, is written, and the status line is
/// drawn again below it.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let status = STATUS.lock().expect("never poisoned");
        let mut stderr = std::io::stderr().lock();
        if status.is_some() {
            stderr.write_all(CLEAR)?;
        }
        stderr.write_all(buf)?;
        if let (Some(line), true) = (status.as_ref(), buf.ends_with(b"\n")) {
            stderr.write_all(line.as_bytes())?;
        }
        stderr.flush()?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_says_rates_and_lag() {
        assert_eq!(
            format(1234.4, 600.0, 0.25, Some(42)),
            "▶ 1234 records/s in · 600/s out · 0.2/s to dead letters · lag 42"
        );
        assert!(format(0.0, 0.0, 0.0, None).ends_with("lag ?"));
    }
}
