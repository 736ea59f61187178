#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod editor;
mod history;
mod lex;
pub mod parse;
pub mod path;

pub use history::MAX_HISTORY;
