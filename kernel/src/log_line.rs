//! One kernel log line (see `klog`), formatted before any lock is taken: bounded in length, and
//! with control characters escaped, so that whatever a component, a guest
//! or a client put in a message can neither hold the console for long nor
//! forge a line (a `\n` or an ANSI escape in a message stays inside it).

use core::fmt;

/// The most bytes of message text one line carries; the rest is counted
/// and reported as cut.
pub const LINE_TEXT_MAX: usize = 1024;

pub struct LineBuf {
    buf: [u8; LINE_TEXT_MAX],
    len: usize,
    /// Bytes of text that did not fit.
    cut: usize,
}

impl Default for LineBuf {
    fn default() -> LineBuf {
        LineBuf::new()
    }
}

impl LineBuf {
    pub const fn new() -> LineBuf {
        LineBuf {
            buf: [0; LINE_TEXT_MAX],
            len: 0,
            cut: 0,
        }
    }

    /// The text kept (always whole UTF-8 characters).
    pub fn text(&self) -> &str {
        // Only whole characters are ever copied in.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }

    pub fn cut(&self) -> usize {
        self.cut
    }

    fn push_str(&mut self, s: &str) {
        if self.cut > 0 || self.len + s.len() > LINE_TEXT_MAX {
            self.cut += s.len();
            return;
        }
        self.buf[self.len..self.len + s.len()].copy_from_slice(s.as_bytes());
        self.len += s.len();
    }

    fn push_char(&mut self, c: char) {
        let mut tmp = [0u8; 4];
        self.push_str(c.encode_utf8(&mut tmp));
    }

    fn push_escaped(&mut self, c: char) {
        match c {
            '\n' => self.push_str("\\n"),
            '\r' => self.push_str("\\r"),
            '\t' => self.push_str("\\t"),
            _ => {
                let mut tmp = [0u8; 10];
                let code = c as u32;
                let hex = b"0123456789abcdef";
                tmp[..2].copy_from_slice(b"\\x");
                tmp[2] = hex[((code >> 4) & 0xf) as usize];
                tmp[3] = hex[(code & 0xf) as usize];
                // `code` is below 0xa0 here: two hex digits suffice.
                self.push_str(core::str::from_utf8(&tmp[..4]).unwrap_or("?"));
            }
        }
    }
}

impl fmt::Write for LineBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            if c.is_control() {
                self.push_escaped(c);
            } else {
                self.push_char(c);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use core::fmt::Write;

    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        let mut line = LineBuf::new();
        write!(line, "a\nkernel: starina: ready\r\x1b[2Jz\u{7f}").unwrap();
        assert_eq!(line.text(), "a\\nkernel: starina: ready\\r\\x1b[2Jz\\x7f");
        assert_eq!(line.cut(), 0);
    }

    #[test]
    fn long_text_is_cut_at_a_character_boundary_and_counted() {
        let mut line = LineBuf::new();
        let long = "é".repeat(LINE_TEXT_MAX); // 2 bytes each
        write!(line, "{long}").unwrap();
        assert_eq!(line.text().len(), LINE_TEXT_MAX);
        assert_eq!(line.cut(), LINE_TEXT_MAX);
        write!(line, "more").unwrap();
        assert_eq!(line.cut(), LINE_TEXT_MAX + 4);
    }

    #[test]
    fn utf8_passes_through() {
        let mut line = LineBuf::new();
        write!(line, "naïve → {}", 42).unwrap();
        assert_eq!(line.text(), "naïve → 42");
    }
}
