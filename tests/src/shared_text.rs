//! Text written by another thread (a console, a command's output), shared
//! with the test that waits for it.

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
        let start = Instant::now();
        while !self.text().contains(needle) {
            if start.elapsed() >= timeout {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
        true
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
