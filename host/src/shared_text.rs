//! Text written by another thread (a console, a command's output), shared
//! with the code that waits for it: the tests, the benchmark, the profiler.

use std::io::Write;
use std::sync::Arc;
use std::sync::Mutex;
use std::thread;
use std::time::Duration;
use std::time::Instant;

#[derive(Clone, Default)]
pub struct SharedText(Arc<Mutex<Vec<u8>>>);

impl SharedText {
    pub fn new() -> SharedText {
        SharedText::default()
    }

    /// Everything written so far (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Whether `needle` was written within `timeout`.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> bool {
        self.wait_while(needle, timeout, || true)
    }

    /// Whether `needle` was written within `timeout`, giving up early once
    /// `alive` says the writer is gone.
    pub fn wait_while(
        &self,
        needle: &str,
        timeout: Duration,
        mut alive: impl FnMut() -> bool,
    ) -> bool {
        let start = Instant::now();
        while !self.text().contains(needle) {
            if start.elapsed() >= timeout || !alive() {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// The last `n` lines written.
    pub fn tail(&self, n: usize) -> String {
        let text = self.text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Write for SharedText {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
