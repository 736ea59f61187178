//! A line editor for a serial terminal: a state machine fed one input byte
//! at a time ([`Editor::feed`]) that keeps the line, understands VT100/xterm
//! keys and collects the bytes to write back ([`Editor::take_output`]) so
//! the screen shows the line and the cursor where they are.
//!
//! Keys: printable UTF-8 inserts; Left/Right (`ESC [ C/D`, `ESC O C/D`,
//! Ctrl-B/F) move by character; Home/End (`ESC [ H/F`, `ESC O H/F`,
//! `ESC [ 1~/7~`, `ESC [ 4~/8~`, Ctrl-A/E); Backspace (0x7f, 0x08);
//! Delete (`ESC [ 3~`, Ctrl-D on a non-empty line); Ctrl-U/K kill to the
//! start/end, Ctrl-W the word before the cursor; Ctrl-L redraws on a clear
//! screen; Up/Down (`ESC [ A/B`, `ESC O A/B`, Ctrl-P/N) browse the history;
//! Tab asks for completion; Enter is CR, LF or CR LF (once); Ctrl-C cancels
//! the line; Ctrl-D on an empty line is the end of input.
//!
//! Every column is one character wide, and a line longer than the terminal
//! is redrawn as if the terminal were wide enough (edits in the middle of a
//! wrapped line leave the screen stale until Ctrl-L).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::history::History;

/// The longest line in bytes; input beyond it is refused with a bell.
pub const MAX_LINE: usize = 4096;

const BELL: u8 = 0x07;
const CLEAR_TO_END: &[u8] = b"\x1b[K";

/// What a byte of input finished.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Nothing yet.
    None,
    /// Enter: the line (also added to the history).
    Line(String),
    /// Ctrl-C: the line was cancelled.
    Interrupted,
    /// Ctrl-D on an empty line.
    EndOfInput,
    /// Tab: complete the word that ends at the cursor; `before` is the
    /// line up to the cursor, `repeated` says the key before was Tab too.
    Complete { before: String, repeated: bool },
}

/// Where the editor is in an escape sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Esc {
    None,
    /// After ESC.
    Start,
    /// After `ESC [`: the first numeric parameter so far, and whether a
    /// `;` ended it (further parameters are ignored).
    Csi {
        param: u16,
        more: bool,
    },
    /// After `ESC O`.
    Ss3,
}

/// An editing key that came as an escape sequence or a control key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    Left,
    Right,
    Home,
    End,
    Up,
    Down,
    Delete,
}

/// The editor; see the module documentation.
#[derive(Debug)]
pub struct Editor {
    prompt: String,
    line: String,
    /// Byte offset of the cursor in `line`, on a character boundary.
    cursor: usize,
    /// A UTF-8 sequence being received, and how long it will be.
    utf8: Vec<u8>,
    utf8_len: usize,
    esc: Esc,
    after_cr: bool,
    after_tab: bool,
    history: History,
    out: Vec<u8>,
}

impl Editor {
    pub fn new(prompt: &str) -> Editor {
        Editor {
            prompt: String::from(prompt),
            line: String::new(),
            cursor: 0,
            utf8: Vec::new(),
            utf8_len: 0,
            esc: Esc::None,
            after_cr: false,
            after_tab: false,
            history: History::default(),
            out: Vec::new(),
        }
    }

    /// The prompt for the next [`Editor::begin_line`].
    pub fn set_prompt(&mut self, prompt: &str) {
        self.prompt = String::from(prompt);
    }

    /// Starts a line: writes the prompt (after Enter, Ctrl-C, or output).
    pub fn begin_line(&mut self) {
        self.out.extend_from_slice(self.prompt.as_bytes());
    }

    /// The bytes to write to the terminal since the last call.
    pub fn take_output(&mut self) -> Vec<u8> {
        core::mem::take(&mut self.out)
    }

    /// The line being edited.
    pub fn line(&self) -> &str {
        &self.line
    }

    /// The cursor's byte offset in [`Editor::line`].
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// The history, oldest first.
    pub fn history(&self) -> impl Iterator<Item = &str> {
        self.history.entries()
    }

    /// Rings the terminal's bell.
    pub fn bell(&mut self) {
        self.out.push(BELL);
    }

    /// Takes one byte of terminal input.
    pub fn feed(&mut self, byte: u8) -> Event {
        let after_cr = core::mem::replace(&mut self.after_cr, false);
        let after_tab = core::mem::replace(&mut self.after_tab, false);
        if self.esc != Esc::None && self.escape(byte) {
            return Event::None;
        }
        if !self.utf8.is_empty() && self.utf8_continues(byte) {
            return Event::None;
        }
        match byte {
            b'\r' => {
                self.after_cr = true;
                self.enter()
            }
            b'\n' if after_cr => Event::None,
            b'\n' => self.enter(),
            b'\t' => {
                self.after_tab = true;
                let before = String::from(&self.line[..self.cursor]);
                Event::Complete {
                    before,
                    repeated: after_tab,
                }
            }
            0x03 => self.interrupt(),
            0x04 if self.line.is_empty() => {
                self.out.extend_from_slice(b"\r\n");
                Event::EndOfInput
            }
            0x1b => {
                self.esc = Esc::Start;
                Event::None
            }
            0x00..=0x1f | 0x7f => {
                self.control(byte);
                Event::None
            }
            _ => {
                self.utf8_start(byte);
                Event::None
            }
        }
    }

    fn enter(&mut self) -> Event {
        self.out.extend_from_slice(b"\r\n");
        let line = core::mem::take(&mut self.line);
        self.cursor = 0;
        self.history.push(&line);
        Event::Line(line)
    }

    fn interrupt(&mut self) -> Event {
        self.out.extend_from_slice(b"^C\r\n");
        self.line.clear();
        self.cursor = 0;
        self.history.reset();
        Event::Interrupted
    }

    /// Control keys other than Enter, Tab, Ctrl-C and ESC.
    fn control(&mut self, byte: u8) {
        match byte {
            0x01 => self.key(Key::Home),
            0x02 => self.key(Key::Left),
            0x04 => self.key(Key::Delete),
            0x05 => self.key(Key::End),
            0x06 => self.key(Key::Right),
            0x08 | 0x7f if self.cursor > 0 => {
                self.delete_range(self.prev(self.cursor), self.cursor)
            }
            0x0b => self.delete_range(self.cursor, self.line.len()),
            0x0c => self.redraw(),
            0x0e => self.key(Key::Down),
            0x10 => self.key(Key::Up),
            0x15 => self.delete_range(0, self.cursor),
            0x17 => self.delete_range(self.word_start(), self.cursor),
            _ => {}
        }
    }

    /// Takes a byte inside an escape sequence; false if the byte ended
    /// the sequence without being part of it (it is then handled as input).
    fn escape(&mut self, byte: u8) -> bool {
        let state = core::mem::replace(&mut self.esc, Esc::None);
        match (state, byte) {
            (_, 0x1b) => self.esc = Esc::Start,
            (Esc::Start, b'[') => {
                self.esc = Esc::Csi {
                    param: 0,
                    more: false,
                }
            }
            (Esc::Start, b'O') => self.esc = Esc::Ss3,
            (Esc::Csi { param, more: false }, b'0'..=b'9') => {
                let param = param
                    .saturating_mul(10)
                    .saturating_add(u16::from(byte - b'0'));
                self.esc = Esc::Csi { param, more: false };
            }
            (Esc::Csi { param, .. }, 0x20..=0x3f) => {
                self.esc = Esc::Csi { param, more: true };
            }
            (Esc::Csi { param, .. }, 0x40..=0x7e) => self.csi(param, byte),
            (Esc::Ss3, 0x40..=0x7e) => self.csi(0, byte),
            _ => return false,
        }
        true
    }

    /// A complete `ESC [ param final` (or `ESC O final`, param 0).
    fn csi(&mut self, param: u16, final_byte: u8) {
        let key = match (final_byte, param) {
            (b'A', _) => Key::Up,
            (b'B', _) => Key::Down,
            (b'C', _) => Key::Right,
            (b'D', _) => Key::Left,
            (b'H', _) | (b'~', 1 | 7) => Key::Home,
            (b'F', _) | (b'~', 4 | 8) => Key::End,
            (b'~', 3) => Key::Delete,
            _ => return,
        };
        self.key(key);
    }

    fn key(&mut self, key: Key) {
        match key {
            Key::Left if self.cursor > 0 => self.move_to(self.prev(self.cursor)),
            Key::Right if self.cursor < self.line.len() => self.move_to(self.next(self.cursor)),
            Key::Home => self.move_to(0),
            Key::End => self.move_to(self.line.len()),
            Key::Delete if self.cursor < self.line.len() => {
                self.delete_range(self.cursor, self.next(self.cursor))
            }
            Key::Up => match self.history.up(&self.line) {
                Some(entry) => {
                    let entry = String::from(entry);
                    self.replace_line(entry);
                }
                None => self.bell(),
            },
            Key::Down => match self.history.down() {
                Some(entry) => self.replace_line(entry),
                None => self.bell(),
            },
            _ => {}
        }
    }
}

/// Receiving UTF-8: a character may arrive in several bytes.
impl Editor {
    /// A byte that is not ASCII control or ESC, outside a sequence.
    fn utf8_start(&mut self, byte: u8) {
        let len = match byte {
            0x20..=0x7e => {
                self.insert_char(byte as char);
                return;
            }
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            _ => {
                self.bell();
                return;
            }
        };
        self.utf8.push(byte);
        self.utf8_len = len;
    }

    /// A byte while a UTF-8 sequence is pending; false if it is not a
    /// continuation byte (the partial character is dropped and the byte is
    /// handled as new input).
    fn utf8_continues(&mut self, byte: u8) -> bool {
        if !(0x80..=0xbf).contains(&byte) {
            self.utf8.clear();
            self.bell();
            return false;
        }
        self.utf8.push(byte);
        if self.utf8.len() < self.utf8_len {
            return true;
        }
        let bytes = core::mem::take(&mut self.utf8);
        match core::str::from_utf8(&bytes)
            .ok()
            .and_then(|s| s.chars().next())
        {
            Some(c) if !c.is_control() => self.insert_char(c),
            _ => self.bell(),
        }
        true
    }

    fn insert_char(&mut self, c: char) {
        let mut buf = [0; 4];
        self.insert(c.encode_utf8(&mut buf));
    }
}

/// Changing the line and the screen together.
impl Editor {
    /// Inserts `text` at the cursor (a completion, or typed characters).
    /// Refused with a bell, the line unchanged, if it would make the line
    /// longer than [`MAX_LINE`] or has control characters.
    pub fn insert(&mut self, text: &str) -> bool {
        if self.line.len() + text.len() > MAX_LINE || text.chars().any(char::is_control) {
            self.bell();
            return false;
        }
        self.line.insert_str(self.cursor, text);
        self.out
            .extend_from_slice(&self.line.as_bytes()[self.cursor..]);
        self.cursor += text.len();
        self.cursor_left(chars(&self.line[self.cursor..]));
        true
    }

    /// Shows completion candidates on the lines below, then the prompt and
    /// the line again. Control characters in them show as `?`.
    pub fn show_list(&mut self, items: &[String]) {
        self.out.extend_from_slice(b"\r\n");
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.out.extend_from_slice(b"  ");
            }
            for c in item.chars() {
                let c = if c.is_control() { '?' } else { c };
                let mut buf = [0; 4];
                self.out
                    .extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
        self.out.extend_from_slice(b"\r\n");
        self.redraw_line();
    }

    /// Removes `line[start..end]`, where `start <= cursor <= end`; the
    /// cursor ends at `start`.
    fn delete_range(&mut self, start: usize, end: usize) {
        if start == end {
            return;
        }
        self.cursor_left(chars(&self.line[start..self.cursor]));
        self.line.replace_range(start..end, "");
        self.cursor = start;
        self.out.extend_from_slice(&self.line.as_bytes()[start..]);
        self.out.extend_from_slice(CLEAR_TO_END);
        self.cursor_left(chars(&self.line[start..]));
    }

    /// Shows `line` instead of the current one, cursor at its end.
    fn replace_line(&mut self, line: String) {
        self.cursor_left(chars(&self.line[..self.cursor]));
        self.line = line;
        self.cursor = self.line.len();
        self.out.extend_from_slice(self.line.as_bytes());
        self.out.extend_from_slice(CLEAR_TO_END);
    }

    /// Ctrl-L: clears the screen and draws the prompt and line at the top.
    fn redraw(&mut self) {
        self.out.extend_from_slice(b"\x1b[H\x1b[2J");
        self.redraw_line();
    }

    /// Prompt and line on the current (fresh) screen line, cursor in place.
    fn redraw_line(&mut self) {
        self.out.extend_from_slice(self.prompt.as_bytes());
        self.out.extend_from_slice(self.line.as_bytes());
        self.cursor_left(chars(&self.line[self.cursor..]));
    }

    fn move_to(&mut self, to: usize) {
        if to < self.cursor {
            self.cursor_left(chars(&self.line[to..self.cursor]));
        } else {
            self.cursor_right(chars(&self.line[self.cursor..to]));
        }
        self.cursor = to;
    }

    fn cursor_left(&mut self, columns: usize) {
        self.cursor_move(columns, 'D');
    }

    fn cursor_right(&mut self, columns: usize) {
        self.cursor_move(columns, 'C');
    }

    fn cursor_move(&mut self, columns: usize, direction: char) {
        match columns {
            0 => {}
            1 => self
                .out
                .extend_from_slice(format!("\x1b[{direction}").as_bytes()),
            n => self
                .out
                .extend_from_slice(format!("\x1b[{n}{direction}").as_bytes()),
        }
    }

    /// The character boundary before `i`.
    fn prev(&self, i: usize) -> usize {
        self.line[..i]
            .char_indices()
            .next_back()
            .map_or(0, |(j, _)| j)
    }

    /// The character boundary after `i`.
    fn next(&self, i: usize) -> usize {
        self.line[i..]
            .chars()
            .next()
            .map_or(i, |c| i + c.len_utf8())
    }

    /// Where Ctrl-W's kill starts: back over blanks, then over the word.
    fn word_start(&self) -> usize {
        let before = &self.line[..self.cursor];
        let trimmed = before.trim_end_matches([' ', '\t']);
        trimmed.rfind([' ', '\t']).map_or(0, |i| i + 1)
    }
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    /// A terminal of unbounded width that understands what the editor
    /// writes: text, CR, LF, BS, `ESC [ n C/D`, `ESC [ K`, `ESC [ H`,
    /// `ESC [ 2 J`, and BEL (counted).
    #[derive(Default)]
    struct Screen {
        rows: Vec<Vec<char>>,
        row: usize,
        col: usize,
        bells: usize,
    }

    impl Screen {
        fn write(&mut self, bytes: &[u8]) {
            let text = core::str::from_utf8(bytes).expect("editor output is UTF-8");
            let mut chars = text.chars().peekable();
            while let Some(c) = chars.next() {
                match c {
                    '\r' => self.col = 0,
                    '\n' => self.row += 1,
                    '\x07' => self.bells += 1,
                    '\x08' => self.col = self.col.saturating_sub(1),
                    '\x1b' => {
                        assert_eq!(chars.next(), Some('['));
                        let mut n = String::new();
                        while let Some(d) = chars.next_if(|c| c.is_ascii_digit()) {
                            n.push(d);
                        }
                        let n: usize = n.parse().unwrap_or(1);
                        match chars.next().unwrap() {
                            'C' => self.col += n,
                            'D' => {
                                self.col = self.col.checked_sub(n).expect("cursor left of column 0")
                            }
                            'K' => {
                                let col = self.col;
                                self.current().truncate(col);
                            }
                            'H' => (self.row, self.col) = (0, 0),
                            'J' => self.rows.clear(),
                            other => panic!("unexpected escape {other}"),
                        }
                    }
                    c => {
                        assert!(!c.is_control(), "control character {c:?} written");
                        let col = self.col;
                        let line = self.current();
                        if line.len() <= col {
                            line.resize(col, ' ');
                            line.push(c);
                        } else {
                            line[col] = c;
                        }
                        self.col += 1;
                    }
                }
            }
        }

        fn current(&mut self) -> &mut Vec<char> {
            if self.rows.len() <= self.row {
                self.rows.resize(self.row + 1, Vec::new());
            }
            &mut self.rows[self.row]
        }

        fn line(&mut self) -> String {
            self.current().iter().collect()
        }
    }

    struct Term {
        ed: Editor,
        screen: Screen,
        events: Vec<Event>,
    }

    impl Term {
        fn new() -> Term {
            let mut ed = Editor::new("$ ");
            ed.begin_line();
            let mut term = Term {
                ed,
                screen: Screen::default(),
                events: Vec::new(),
            };
            term.flush();
            term
        }

        fn flush(&mut self) {
            let out = self.ed.take_output();
            self.screen.write(&out);
        }

        fn feed(&mut self, bytes: &[u8]) -> &mut Term {
            for &b in bytes {
                let event = self.ed.feed(b);
                if matches!(event, Event::Line(_) | Event::Interrupted) {
                    // What the shell does once it has run the line.
                    self.ed.begin_line();
                }
                if event != Event::None {
                    self.events.push(event);
                }
            }
            self.flush();
            self
        }

        /// The screen shows the prompt and line, the cursor where it is.
        fn assert_shown(&mut self) {
            let expected = alloc::format!("$ {}", self.ed.line());
            assert_eq!(self.screen.line(), expected);
            let col = 2 + chars(&self.ed.line()[..self.ed.cursor()]);
            assert_eq!(
                self.screen.col,
                col,
                "cursor column for {:?}",
                self.ed.line()
            );
        }

        fn state(&self) -> (&str, usize) {
            (self.ed.line(), self.ed.cursor())
        }
    }

    fn line(s: &str) -> Event {
        Event::Line(s.to_string())
    }

    const LEFT: &[u8] = b"\x1b[D";
    const RIGHT: &[u8] = b"\x1b[C";
    const UP: &[u8] = b"\x1b[A";
    const DOWN: &[u8] = b"\x1b[B";

    #[test]
    fn typing_echoes_and_enter_returns_the_line() {
        let mut t = Term::new();
        t.feed(b"echo hi");
        t.assert_shown();
        assert_eq!(t.ed.take_output(), b"");
        t.feed(b"\r");
        assert_eq!(t.events, vec![line("echo hi")]);
        assert_eq!(t.state(), ("", 0));
        assert_eq!(t.screen.row, 1);
        t.assert_shown();
    }

    #[test]
    fn enter_as_cr_lf_or_crlf_counts_once() {
        let mut t = Term::new();
        t.feed(b"a\r\nb\nc\r\r\n\n");
        assert_eq!(
            t.events,
            vec![line("a"), line("b"), line("c"), line(""), line("")]
        );
    }

    #[test]
    fn plain_echo_is_just_the_bytes() {
        let mut ed = Editor::new("> ");
        for &b in b"ab" {
            ed.feed(b);
        }
        assert_eq!(ed.take_output(), b"ab");
    }

    #[test]
    fn insertion_in_the_middle_redraws_the_rest() {
        let mut t = Term::new();
        t.feed(b"held").feed(LEFT).feed(LEFT);
        assert_eq!(t.ed.take_output(), b"");
        t.ed.feed(b'l');
        let out = t.ed.take_output();
        assert_eq!(out, b"lld\x1b[2D");
        t.screen.write(&out);
        assert_eq!(t.state(), ("helld", 3));
        t.assert_shown();
    }

    #[test]
    fn arrows_in_both_encodings_and_ctrl_keys_move() {
        let mut t = Term::new();
        t.feed(b"abcd").feed(b"\x1bOD").feed(LEFT);
        assert_eq!(t.state(), ("abcd", 2));
        t.feed(b"\x02").feed(b"\x06\x06\x06");
        assert_eq!(t.state(), ("abcd", 4));
        t.feed(RIGHT).assert_shown();
        assert_eq!(t.ed.cursor(), 4);
        t.feed(b"\x01");
        assert_eq!(t.ed.cursor(), 0);
        t.feed(LEFT).assert_shown();
        t.feed(b"\x05").assert_shown();
        assert_eq!(t.ed.cursor(), 4);
    }

    #[test]
    fn home_and_end_sequences() {
        for (home, end) in [
            (&b"\x1b[H"[..], &b"\x1b[F"[..]),
            (b"\x1bOH", b"\x1bOF"),
            (b"\x1b[1~", b"\x1b[4~"),
            (b"\x1b[7~", b"\x1b[8~"),
        ] {
            let mut t = Term::new();
            t.feed(b"xyz").feed(home);
            assert_eq!(t.ed.cursor(), 0);
            t.assert_shown();
            t.feed(end);
            assert_eq!(t.ed.cursor(), 3);
            t.assert_shown();
        }
    }

    #[test]
    fn backspace_both_codes_and_delete() {
        let mut t = Term::new();
        t.feed(b"abcde\x7f\x08");
        assert_eq!(t.state(), ("abc", 3));
        t.feed(LEFT).feed(LEFT).feed(b"\x7f");
        assert_eq!(t.state(), ("bc", 0));
        t.assert_shown();
        t.feed(b"\x7f");
        assert_eq!(t.state(), ("bc", 0));
        t.feed(b"\x1b[3~");
        assert_eq!(t.state(), ("c", 0));
        t.assert_shown();
        t.feed(b"\x1b[C\x1b[3~\x04");
        assert_eq!(t.state(), ("c", 1));
        t.feed(b"\x01\x04");
        assert_eq!(t.state(), ("", 0));
        t.assert_shown();
        assert!(t.events.is_empty());
    }

    #[test]
    fn kills_ctrl_u_k_w() {
        let mut t = Term::new();
        t.feed(b"ls -l /www  ").feed(b"\x17");
        assert_eq!(t.state(), ("ls -l ", 6));
        t.assert_shown();
        t.feed(b"\x17\x17");
        assert_eq!(t.state(), ("", 0));
        t.feed(b"one two three").feed(LEFT).feed(LEFT).feed(b"\x0b");
        assert_eq!(t.state(), ("one two thr", 11));
        t.assert_shown();
        t.feed(LEFT).feed(LEFT).feed(LEFT).feed(b"\x15");
        assert_eq!(t.state(), ("thr", 0));
        t.assert_shown();
    }

    #[test]
    fn ctrl_l_redraws_on_a_clear_screen() {
        let mut t = Term::new();
        t.feed(b"abc").feed(LEFT).feed(b"\x0c");
        assert_eq!(t.screen.row, 0);
        t.assert_shown();
    }

    #[test]
    fn ctrl_c_cancels_the_line() {
        let mut t = Term::new();
        t.feed(b"rm -rf x\x03");
        assert_eq!(t.events, vec![Event::Interrupted]);
        assert_eq!(t.state(), ("", 0));
        assert_eq!(t.screen.rows[0].iter().collect::<String>(), "$ rm -rf x^C");
        assert_eq!(t.ed.history().count(), 0);
    }

    #[test]
    fn ctrl_d_ends_input_only_on_an_empty_line() {
        let mut t = Term::new();
        t.feed(b"x\x04");
        assert!(t.events.is_empty());
        t.feed(b"\x7f\x04");
        assert_eq!(t.events, vec![Event::EndOfInput]);
    }

    #[test]
    fn tab_asks_for_completion_with_the_text_before_the_cursor() {
        let mut t = Term::new();
        t.feed(b"cat /ww x").feed(LEFT).feed(LEFT).feed(b"\t\t");
        assert_eq!(
            t.events,
            vec![
                Event::Complete {
                    before: "cat /ww".to_string(),
                    repeated: false
                },
                Event::Complete {
                    before: "cat /ww".to_string(),
                    repeated: true
                },
            ]
        );
        t.feed(b"a\t");
        assert_eq!(
            t.events[2],
            Event::Complete {
                before: "cat /wwa".to_string(),
                repeated: false
            }
        );
    }

    #[test]
    fn completion_inserts_and_lists() {
        let mut t = Term::new();
        t.feed(b"cat /w").feed(b"\t");
        assert!(t.ed.insert("ww/"));
        t.flush();
        t.assert_shown();
        t.ed.show_list(&["index.html".to_string(), "a\x1bb".to_string()]);
        t.flush();
        assert_eq!(
            t.screen.rows[1].iter().collect::<String>(),
            "index.html  a?b"
        );
        assert_eq!(t.screen.row, 2);
        t.assert_shown();
        assert!(!t.ed.insert("x\ny"));
        assert_eq!(t.ed.line(), "cat /www/");
    }

    #[test]
    fn multibyte_characters_move_by_character() {
        let mut t = Term::new();
        t.feed("héllo 日本".as_bytes()).assert_shown();
        t.feed(LEFT).feed(LEFT).feed(b"\x7f");
        assert_eq!(t.state(), ("héllo日本", 6));
        t.assert_shown();
        t.feed(b"\x01").feed(RIGHT).feed(b"\x1b[3~");
        assert_eq!(t.state(), ("hllo日本", 1));
        t.feed("é".as_bytes()).assert_shown();
        assert_eq!(t.ed.line(), "héllo日本");
        t.feed("🎉".as_bytes()).assert_shown();
        t.feed(b"\x17");
        assert_eq!(t.state(), ("llo日本", 0));
        t.assert_shown();
    }

    #[test]
    fn invalid_utf8_is_dropped_with_a_bell() {
        let mut t = Term::new();
        // Stray continuation, overlong, surrogate, too large, truncated
        // sequence interrupted by ASCII, C1 control, 0xff.
        t.feed(b"a\x80\xc0\xaf\xed\xa0\x80\xf4\x90\x80\x80\xe6\x97b\xc2\x9b\xffc");
        assert_eq!(t.ed.line(), "abc");
        assert!(t.screen.bells >= 6, "{} bells", t.screen.bells);
        t.assert_shown();
    }

    #[test]
    fn truncated_utf8_before_enter_or_escape() {
        let mut t = Term::new();
        t.feed(b"x\xe6\x97\r");
        assert_eq!(t.events, vec![line("x")]);
        t.feed(b"y\xe6\x1b[Dz");
        assert_eq!(t.state(), ("zy", 1));
    }

    #[test]
    fn lines_are_bounded() {
        let mut t = Term::new();
        let long = "x".repeat(MAX_LINE + 10);
        t.feed(long.as_bytes());
        assert_eq!(t.ed.line().len(), MAX_LINE);
        assert_eq!(t.screen.bells, 10);
        t.feed("é".as_bytes());
        assert_eq!(t.ed.line().len(), MAX_LINE);
        t.feed(b"\x7f");
        t.feed("é".as_bytes());
        assert_eq!(t.ed.line().len(), MAX_LINE - 1);
        assert!(!t.ed.insert("ab"));
        t.feed(b"\r");
        assert_eq!(t.events.len(), 1);
    }

    #[test]
    fn a_million_bytes_of_noise_do_not_break_it() {
        let mut t = Term::new();
        let mut x: u32 = 12345;
        let mut noise = Vec::new();
        for _ in 0..1_000_000 {
            x = x.wrapping_mul(1103515245).wrapping_add(12345);
            let b = (x >> 16) as u8;
            // Keep lines coming but avoid clearing the screen state too often.
            noise.push(if b == 0x0c { b'a' } else { b });
        }
        for chunk in noise.chunks(997) {
            t.feed(chunk);
            assert!(t.ed.line().len() <= MAX_LINE);
            assert!(t.ed.line().is_char_boundary(t.ed.cursor()));
        }
        assert!(t.events.iter().any(|e| matches!(e, Event::Line(_))));
    }

    #[test]
    fn stray_and_unknown_escape_sequences_are_ignored() {
        let mut t = Term::new();
        t.feed(b"ab\x1b[Z\x1b[99~\x1b[1;5C\x1b[200~c\x1bxd\x1b\x1b[De");
        // ESC [ 1;5 C (Ctrl-Right) moves right like Right; ESC x drops the ESC.
        assert_eq!(t.state(), ("abcxed", 5));
        t.feed(b"\x1b[12345678901234567890~f");
        t.feed(b"\x1b[\rg");
        assert_eq!(t.events, vec![line("abcxefd")]);
        assert_eq!(t.ed.line(), "g");
    }

    #[test]
    fn history_up_down_keeps_the_edited_line() {
        let mut t = Term::new();
        t.feed(b"one\rtwo\rtwo\r  \rdraft");
        assert_eq!(t.ed.history().collect::<Vec<_>>(), ["one", "two"]);
        t.feed(UP);
        assert_eq!(t.state(), ("two", 3));
        t.assert_shown();
        t.feed(b"\x10");
        assert_eq!(t.ed.line(), "one");
        t.assert_shown();
        let bells = t.screen.bells;
        t.feed(UP);
        assert_eq!((t.ed.line(), t.screen.bells), ("one", bells + 1));
        t.feed(DOWN).feed(b"\x0e");
        assert_eq!(t.state(), ("draft", 5));
        t.assert_shown();
        t.feed(DOWN);
        assert_eq!(t.screen.bells, bells + 2);
    }

    #[test]
    fn a_recalled_line_can_be_edited_and_entered() {
        let mut t = Term::new();
        t.feed(b"echo a\r").feed(b"\x1bOA").feed(b"\x7fb\r");
        assert_eq!(t.events, vec![line("echo a"), line("echo b")]);
        assert_eq!(t.ed.history().collect::<Vec<_>>(), ["echo a", "echo b"]);
    }

    #[test]
    fn the_screen_matches_the_line_after_every_key() {
        let keys: [&[u8]; 12] = [
            b"a",
            "é".as_bytes(),
            b" ",
            LEFT,
            RIGHT,
            b"\x01",
            b"\x05",
            b"\x7f",
            b"\x1b[3~",
            b"\x17",
            b"\x0b",
            b"\x15",
        ];
        let mut t = Term::new();
        let mut x: u32 = 7;
        for _ in 0..5000 {
            x = x.wrapping_mul(1103515245).wrapping_add(12345);
            t.feed(keys[(x >> 16) as usize % keys.len()]);
            t.assert_shown();
        }
    }

    #[test]
    fn splitting_the_input_anywhere_gives_the_same_result() {
        let input = "ls é\x1b[D\x1b[3~\x1bOD\x7fx\r\nab\x1b[1~c\t\x03d\x0b\r".as_bytes();
        let whole = {
            let mut t = Term::new();
            t.feed(input);
            (t.events, t.screen.rows)
        };
        for split in 0..=input.len() {
            let mut t = Term::new();
            t.feed(&input[..split]).feed(&input[split..]);
            assert_eq!(
                (&t.events, &t.screen.rows),
                (&whole.0, &whole.1),
                "split at {split}"
            );
        }
        assert_eq!(whole.0[0], line("lx "));
    }
}
