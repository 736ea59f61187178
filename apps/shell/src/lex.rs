//! The lexer of the command language: a line into words (quotes, escapes
//! and `$` references resolved into [`Part`]s), operators and redirection
//! operators. One pass, no recursion.

use alloc::string::String;
use alloc::vec::Vec;

use crate::parse::ErrorKind;
use crate::parse::Part;
use crate::parse::Word;

/// A list or pipeline operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Pipe,
    And,
    Or,
    Semi,
}

impl Op {
    pub(crate) fn text(self) -> &'static str {
        match self {
            Op::Pipe => "|",
            Op::And => "&&",
            Op::Or => "||",
            Op::Semi => ";",
        }
    }
}

/// A redirection operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RedirOp {
    Read,
    Write,
    Append,
    DupRead,
    DupWrite,
}

impl RedirOp {
    pub(crate) fn text(self) -> &'static str {
        match self {
            RedirOp::Read => "<",
            RedirOp::Write => ">",
            RedirOp::Append => ">>",
            RedirOp::DupRead => "<&",
            RedirOp::DupWrite => ">&",
        }
    }
}

#[derive(Debug)]
pub(crate) enum Token {
    Word(Word),
    Op(Op, usize),
    Redirect { fd: u32, op: RedirOp, pos: usize },
}

type Result<T> = core::result::Result<T, (ErrorKind, usize)>;

/// The tokens of `line`, up to a comment (`#` at the start of a word).
pub(crate) fn tokens(line: &str) -> Result<Vec<Token>> {
    let mut lexer = Lexer {
        src: line,
        i: 0,
        out: Vec::new(),
    };
    lexer.run()?;
    Ok(lexer.out)
}

struct Lexer<'a> {
    src: &'a str,
    i: usize,
    out: Vec<Token>,
}

/// Bytes that end an unquoted word.
fn is_break(b: u8) -> bool {
    matches!(
        b,
        b' ' | b'\t' | b'\r' | b'\n' | b'|' | b'&' | b';' | b'<' | b'>' | b'(' | b')'
    )
}

/// Bytes with a meaning inside an unquoted word.
fn is_special(b: u8) -> bool {
    is_break(b) || matches!(b, b'\\' | b'\'' | b'"' | b'$' | b'`')
}

/// A word being lexed.
struct WordBuf {
    parts: Vec<Part>,
    text: String,
    keep_empty: bool,
    /// Only unquoted ASCII digits so far: `2>` is a descriptor, not a word.
    digits_only: bool,
}

impl WordBuf {
    fn push_str(&mut self, s: &str) {
        self.text.push_str(s);
        self.keep_empty = true;
    }

    fn push_var(&mut self, name: &str) {
        if !self.text.is_empty() {
            self.parts.push(Part::Lit(core::mem::take(&mut self.text)));
        }
        self.parts.push(Part::Var(String::from(name)));
        self.digits_only = false;
    }

    fn finish(mut self, pos: usize) -> Word {
        if !self.text.is_empty() || self.parts.is_empty() {
            self.parts.push(Part::Lit(self.text));
        }
        Word {
            parts: self.parts,
            keep_empty: self.keep_empty,
            pos,
        }
    }
}

impl<'a> Lexer<'a> {
    fn byte(&self, i: usize) -> Option<u8> {
        self.src.as_bytes().get(i).copied()
    }

    fn run(&mut self) -> Result<()> {
        while let Some(b) = self.byte(self.i) {
            let pos = self.i;
            match b {
                b' ' | b'\t' | b'\r' | b'\n' => self.i += 1,
                b'#' => break,
                b'|' if self.byte(pos + 1) == Some(b'|') => self.op(Op::Or, 2),
                b'|' => self.op(Op::Pipe, 1),
                b'&' if self.byte(pos + 1) == Some(b'&') => self.op(Op::And, 2),
                b'&' => return Err((ErrorKind::Unsupported("background jobs (&)"), pos)),
                b';' => self.op(Op::Semi, 1),
                b'<' | b'>' => self.redirect(None, pos)?,
                b'(' | b')' => return Err((ErrorKind::Unsupported("subshells ( )"), pos)),
                _ => self.word()?,
            }
        }
        Ok(())
    }

    fn op(&mut self, op: Op, len: usize) {
        self.out.push(Token::Op(op, self.i));
        self.i += len;
    }

    /// A redirection operator at `self.i`; `fd` is the number written
    /// before it (`2>`), which starts at `pos`.
    fn redirect(&mut self, fd: Option<&str>, pos: usize) -> Result<()> {
        let at = self.i;
        let (op, len) = match (self.byte(at), self.byte(at + 1)) {
            (Some(b'<'), Some(b'<')) => {
                return Err((ErrorKind::Unsupported("here-documents (<<)"), at))
            }
            (Some(b'<'), Some(b'&')) => (RedirOp::DupRead, 2),
            (Some(b'<'), _) => (RedirOp::Read, 1),
            (_, Some(b'>')) => (RedirOp::Append, 2),
            (_, Some(b'&')) => (RedirOp::DupWrite, 2),
            _ => (RedirOp::Write, 1),
        };
        let default = if matches!(op, RedirOp::Read | RedirOp::DupRead) {
            0
        } else {
            1
        };
        let fd = match fd {
            Some(digits) => digits.parse().map_err(|_| (ErrorKind::BadFd, pos))?,
            None => default,
        };
        self.out.push(Token::Redirect { fd, op, pos });
        self.i += len;
        Ok(())
    }

    fn word(&mut self) -> Result<()> {
        let start = self.i;
        let mut w = WordBuf {
            parts: Vec::new(),
            text: String::new(),
            keep_empty: false,
            digits_only: true,
        };
        while let Some(b) = self.byte(self.i) {
            match b {
                b'<' | b'>' if w.digits_only && w.parts.is_empty() && !w.text.is_empty() => {
                    let digits = core::mem::take(&mut w.text);
                    return self.redirect(Some(&digits), start);
                }
                b if is_break(b) => break,
                b'\\' => self.escaped(&mut w)?,
                b'\'' => self.single_quoted(&mut w)?,
                b'"' => self.double_quoted(&mut w)?,
                b'$' => self.dollar(&mut w)?,
                b'`' => return Err((ErrorKind::Unsupported("command substitution `...`"), self.i)),
                _ => {
                    let run = self.run_until(self.i, is_special);
                    w.digits_only &= run.bytes().all(|b| b.is_ascii_digit());
                    w.push_str(run);
                }
            }
        }
        self.out.push(Token::Word(w.finish(start)));
        Ok(())
    }

    /// The text from `from` up to (not including) the first byte matching
    /// `stop`; advances past it.
    fn run_until(&mut self, from: usize, stop: fn(u8) -> bool) -> &'a str {
        let src: &'a str = self.src;
        let len = src.as_bytes()[from..]
            .iter()
            .position(|&b| stop(b))
            .unwrap_or(src.len() - from);
        self.i = from + len;
        &src[from..from + len]
    }

    /// `\c` outside quotes: `c` literally.
    fn escaped(&mut self, w: &mut WordBuf) -> Result<()> {
        let at = self.i;
        let Some(c) = self.src[at + 1..].chars().next() else {
            return Err((ErrorKind::TrailingBackslash, at));
        };
        let mut buf = [0; 4];
        w.push_str(c.encode_utf8(&mut buf));
        w.digits_only = false;
        self.i = at + 1 + c.len_utf8();
        Ok(())
    }

    fn single_quoted(&mut self, w: &mut WordBuf) -> Result<()> {
        let at = self.i;
        let Some(len) = self.src.as_bytes()[at + 1..]
            .iter()
            .position(|&b| b == b'\'')
        else {
            return Err((ErrorKind::UnterminatedSingleQuote, at));
        };
        w.push_str(&self.src[at + 1..at + 1 + len]);
        w.digits_only = false;
        self.i = at + len + 2;
        Ok(())
    }

    fn double_quoted(&mut self, w: &mut WordBuf) -> Result<()> {
        let at = self.i;
        w.keep_empty = true;
        w.digits_only = false;
        self.i += 1;
        loop {
            match self.byte(self.i) {
                None => return Err((ErrorKind::UnterminatedDoubleQuote, at)),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(());
                }
                Some(b'\\') => match self.byte(self.i + 1) {
                    Some(c @ (b'"' | b'\\' | b'$' | b'`')) => {
                        w.push_str(if c == b'"' {
                            "\""
                        } else {
                            &self.src[self.i + 1..self.i + 2]
                        });
                        self.i += 2;
                    }
                    _ => {
                        w.push_str("\\");
                        self.i += 1;
                    }
                },
                Some(b'$') => self.dollar(w)?,
                Some(b'`') => {
                    return Err((ErrorKind::Unsupported("command substitution `...`"), self.i))
                }
                Some(_) => {
                    let run = self.run_until(self.i, |b| matches!(b, b'"' | b'\\' | b'$' | b'`'));
                    w.push_str(run);
                }
            }
        }
    }

    /// `$?`, `$NAME`, `${NAME}`; a `$` before anything else is literal.
    fn dollar(&mut self, w: &mut WordBuf) -> Result<()> {
        let at = self.i;
        match self.byte(at + 1) {
            Some(b'?') => {
                w.push_var("?");
                self.i = at + 2;
            }
            Some(b'{') => {
                let rest = &self.src.as_bytes()[at + 2..];
                let len = rest.iter().position(|&b| b == b'}');
                let name = len.map(|len| &self.src[at + 2..at + 2 + len]);
                match name {
                    Some(name) if name == "?" || is_name(name) => {
                        w.push_var(name);
                        self.i = at + 2 + name.len() + 1;
                    }
                    _ => return Err((ErrorKind::BadSubstitution, at)),
                }
            }
            Some(b'(') => return Err((ErrorKind::Unsupported("command substitution $(...)"), at)),
            Some(b) if b == b'_' || b.is_ascii_alphabetic() => {
                let name = self.run_until(at + 1, |b| !(b == b'_' || b.is_ascii_alphanumeric()));
                w.push_var(name);
            }
            _ => {
                w.push_str("$");
                w.digits_only = false;
                self.i = at + 1;
            }
        }
        Ok(())
    }
}

/// A variable name: a letter or `_`, then letters, digits and `_`.
pub(crate) fn is_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b == b'_' || b.is_ascii_alphabetic())
        && bytes.all(|b| b == b'_' || b.is_ascii_alphanumeric())
}
