//! `http-get [-i] URL`: fetches an `http://` URL through the TCP/IP server
//! (spec need `net`, optional) and writes the body to stdout. `-i` writes
//! the status line and headers first. A status other than 2xx is a
//! failure (status 1, the status line on stderr, no body: as `curl -f`).
//! A connect, or a read, that stalls for [`STALL_MS`] ends with an error.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

mod fetch;
mod response;
mod url;

use alloc::format;
use alloc::string::String;

use starina::command::CommandError;

include!(concat!(env!("OUT_DIR"), "/starina_env.rs"));

/// How long a connect or a read may stall before http-get gives up.
pub const STALL_MS: u64 = 10_000;

const HELP: &str = "usage: http-get [-i] URL\n\
Fetches URL (http://host[:port]/path; host a DNS name or an IPv4 address)\n\
through the TCP/IP server and writes the response body to stdout.\n  \
-i  write the status line and headers first\n\
Status 0: a 2xx response. Status 1: any other status (its status line goes\n\
to stderr and the body is not written, as curl -f), no network in the\n\
profile, a refused or failed connection, a connect or read stalled for 10 s,\n\
or a malformed response. Status 2: bad usage or a malformed URL.\n";

#[derive(Debug, PartialEq, Eq)]
struct Options {
    include_head: bool,
    url: url::Url,
}

fn parse_args(args: &[String]) -> Result<Options, CommandError> {
    let mut include_head = false;
    let mut url = None;
    for arg in args {
        match arg.as_str() {
            "-i" => include_head = true,
            a if a.starts_with('-') => {
                return Err(CommandError::usage(format!(
                    "unknown option '{a}' (see --help)"
                )))
            }
            a if url.is_some() => {
                return Err(CommandError::usage(format!(
                    "one URL at a time (unexpected '{a}')"
                )))
            }
            a => url = Some(url::parse(a).map_err(CommandError::usage)?),
        }
    }
    let url = url.ok_or_else(|| CommandError::usage("which URL? (usage: http-get [-i] URL)"))?;
    Ok(Options { include_head, url })
}

pub fn main(mut env: Env) -> Result<i32, CommandError> {
    if env.args.wants_help() {
        env.stdout.print(HELP)?;
        return Ok(0);
    }
    let opts = parse_args(env.args.rest())?;
    let tcpip = env
        .net
        .take()
        .ok_or_else(|| CommandError::new("no network (the profile runs no tcpip)"))?;
    fetch::fetch(&tcpip, &opts.url, opts.include_head, &mut env.stdout)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec::Vec;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn arguments() {
        let o = parse_args(&args(&["-i", "http://h/p"])).unwrap();
        assert!(o.include_head);
        assert_eq!(o.url.target, "/p");
        assert!(!parse_args(&args(&["http://h/"])).unwrap().include_head);
        for bad in [
            &[][..],
            &["-x", "http://h/"],
            &["http://h/", "http://g/"],
            &["ftp://h/"],
        ] {
            assert_eq!(parse_args(&args(bad)).unwrap_err().status, 2, "{bad:?}");
        }
    }
}
