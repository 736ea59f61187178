//! What a spawn asks for: the command's name, its argument vector and its
//! environment, encoded for the `command_spawn` system call.
//!
//! Encoding (little-endian): `u16 argc`, `u16 varc`, then each string as
//! `u32 length` + UTF-8 bytes: the name, the `argc` arguments (the first is
//! the name the command was called by, like argv[0]), then `varc` pairs of
//! name and value. At most [`REQUEST_MAX`] bytes in all; no NUL anywhere, no
//! `=` in a variable's name.

use alloc::string::String;
use alloc::vec::Vec;

use crate::abi::Error;

/// The largest encoded request (arguments and environment together).
pub const REQUEST_MAX: usize = 256 * 1024;
/// The most arguments, and the most variables, in one request.
pub const ITEMS_MAX: usize = 4096;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The command to run (one of a command spec's `names`).
    pub name: String,
    /// Its arguments; `args[0]` is the name it was called by.
    pub args: Vec<String>,
    /// Its environment: (name, value) pairs.
    pub vars: Vec<(String, String)>,
}

impl Request {
    /// A request for `name` with `args` after it (argv[0] is `name`) and no
    /// environment.
    pub fn new(name: &str, args: &[&str]) -> Request {
        let mut argv = Vec::with_capacity(args.len() + 1);
        argv.push(String::from(name));
        argv.extend(args.iter().map(|a| String::from(*a)));
        Request {
            name: String::from(name),
            args: argv,
            vars: Vec::new(),
        }
    }

    /// The encoded request, or `InvalidArgument` if it breaks a rule above.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        if self.args.len() > ITEMS_MAX || self.vars.len() > ITEMS_MAX {
            return Err(Error::InvalidArgument);
        }
        if self.vars.iter().any(|(k, _)| k.is_empty() || k.contains('=')) {
            return Err(Error::InvalidArgument);
        }
        let mut out = Vec::new();
        out.extend_from_slice(&(self.args.len() as u16).to_le_bytes());
        out.extend_from_slice(&(self.vars.len() as u16).to_le_bytes());
        let strings = core::iter::once(&self.name)
            .chain(self.args.iter())
            .chain(self.vars.iter().flat_map(|(k, v)| [k, v]));
        for s in strings {
            if s.contains('\0') || out.len() + 4 + s.len() > REQUEST_MAX {
                return Err(Error::InvalidArgument);
            }
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        Ok(out)
    }

    /// Decodes and checks a request: `InvalidArgument` for anything
    /// short, long, not UTF-8 or against the rules.
    pub fn decode(bytes: &[u8]) -> Result<Request, Error> {
        if bytes.len() > REQUEST_MAX {
            return Err(Error::InvalidArgument);
        }
        let mut r = Reader { bytes };
        let argc = usize::from(r.u16()?);
        let varc = usize::from(r.u16()?);
        if argc > ITEMS_MAX || varc > ITEMS_MAX {
            return Err(Error::InvalidArgument);
        }
        let name = r.string()?;
        let mut args = Vec::new();
        for _ in 0..argc {
            args.push(r.string()?);
        }
        let mut vars = Vec::new();
        for _ in 0..varc {
            let key = r.string()?;
            if key.is_empty() || key.contains('=') {
                return Err(Error::InvalidArgument);
            }
            vars.push((key, r.string()?));
        }
        if !r.bytes.is_empty() || name.is_empty() {
            return Err(Error::InvalidArgument);
        }
        Ok(Request { name, args, vars })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], Error> {
        if self.bytes.len() < n {
            return Err(Error::InvalidArgument);
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u16(&mut self) -> Result<u16, Error> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn string(&mut self) -> Result<String, Error> {
        let b = self.take(4)?;
        let len = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let text = core::str::from_utf8(self.take(len)?).map_err(|_| Error::InvalidArgument)?;
        if text.contains('\0') {
            return Err(Error::InvalidArgument);
        }
        Ok(String::from(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Request {
        let mut r = Request::new("grep", &["-c", "needle", "/www/index.html"]);
        r.vars.push((String::from("PWD"), String::from("/www")));
        r
    }

    #[test]
    fn a_request_survives_encoding() {
        let r = sample();
        assert_eq!(Request::decode(&r.encode().unwrap()).unwrap(), r);
        assert_eq!(r.args[0], "grep");
    }

    #[test]
    fn every_truncation_and_extension_is_refused() {
        let bytes = sample().encode().unwrap();
        for n in 0..bytes.len() {
            assert_eq!(Request::decode(&bytes[..n]), Err(Error::InvalidArgument), "cut at {n}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Request::decode(&longer), Err(Error::InvalidArgument));
    }

    #[test]
    fn bad_strings_are_refused_both_ways() {
        let mut r = sample();
        r.args.push(String::from("a\0b"));
        assert_eq!(r.encode(), Err(Error::InvalidArgument));
        let mut r = sample();
        r.vars.push((String::from("A=B"), String::from("c")));
        assert_eq!(r.encode(), Err(Error::InvalidArgument));
        // Invalid UTF-8 in the name, and a huge length field.
        let mut bytes = sample().encode().unwrap();
        bytes[8] = 0xff;
        assert_eq!(Request::decode(&bytes), Err(Error::InvalidArgument));
        let mut bytes = sample().encode().unwrap();
        bytes[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(Request::decode(&bytes), Err(Error::InvalidArgument));
    }

    #[test]
    fn a_request_too_large_is_refused() {
        let big = "x".repeat(REQUEST_MAX);
        assert_eq!(
            Request::new("echo", &[&big]).encode(),
            Err(Error::InvalidArgument)
        );
    }
}
