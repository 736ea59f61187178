//! The native shell's logic (issue 13), free of I/O so that it is tested
//! on the host; the shell component wires it to the serial console and to
//! command spawning.
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

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod complete;
pub mod editor;
mod history;
mod lex;
pub mod parse;
pub mod path;

pub use history::MAX_HISTORY;
