//! The native shell (issue 13) on the serial console. Its logic is free
//! of I/O, so that it is tested on the host:
//!
//! - [`editor`]: the line editor. The shell feeds it each byte from the
//!   console ([`editor::Editor::feed`]), writes what
//!   [`editor::Editor::take_output`] returns back to the console, and acts
//!   on the [`editor::Event`]s: run a line, start a fresh prompt after
//!   Ctrl-C, exit at the end of input, complete on Tab. Ctrl-C while a
//!   command runs is the shell's business (the editor is not fed then).
//! - [`complete`]: what Tab does, given the line before the cursor, the
//!   native command names and a way to list a directory;
//!   [`complete::Completion::apply`] shows it in the editor.
//! - [`parse`]: the command language into a [`parse::List`] of pipelines;
//!   each command is expanded ([`parse::Command::expand`], `$?` and
//!   variables) just before it runs.
//! - [`path`]: the native path namespace for `cd`, `pwd` and completion,
//!   and translation to and from Linux's view of it (`/mnt/starina`).
//!
//! and the component wires it to the console and to commands:
//!
//! - [`session`]: the prompt, the editor and each line's pipelines, `;`,
//!   `&&`, `||`, `$?` and the builtins (`cd`, `pwd`, `help`);
//! - [`pipeline`]: one pipeline's stages (native commands, Linux programs),
//!   the channels between them, redirections, the terminal, Ctrl-C;
//! - [`pump`]: threads that move bytes to files, the console and Linux;
//! - [`linux`]: a Linux program as a pipeline stage.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod complete;
pub mod editor;
mod history;
mod lex;
pub mod linux;
pub mod parse;
pub mod path;
pub mod pipeline;
pub mod pump;
pub mod session;

include!(concat!(env!("OUT_DIR"), "/starina_env.rs"));

pub fn main(env: Env) -> Result<(), starina::Error> {
    let files = match env.fs {
        Some(channel) => match starina::fs::Files::new(channel) {
            Ok(files) => Some(files),
            Err(e) => {
                log::warn!("no native files: {e}");
                None
            }
        },
        None => None,
    };
    session::Session::new(env.console, env.spawn, env.linux, files).run()
}

pub use history::MAX_HISTORY;
