//! Starina's host tooling: everything that runs on the developer's machine
//! (or CI) around the OS. The `starina` binary (`scripts/starina`) is a thin
//! front end ([`app::main`]); the end-to-end tests use this library directly.
//!
//! - [`run`]: boot a profile under QEMU, stream the console, map the OS's
//!   status back ([`status::ExitStatus`], the one list of exit statuses).
//! - [`exec`]: run a command in Starina's Linux over the host link
//!   (frames from `starina_bridge::process`).
//! - [`stages`]: `make test`; [`bench`]: `make bench`.
//! - [`kernel`]: the kernel's cargo invocation and RUSTFLAGS.
//! - [`markers`]: every console line the tools wait for or parse.
#![forbid(unsafe_code)]

pub mod agent;
pub mod app;
pub mod attach;
pub mod bench;
pub mod bench_fs;
pub mod bench_fs_git;
pub mod bench_http;
pub mod bench_http_user;
pub mod bench_bochs;
pub mod bench_linux;
pub mod bench_net;
pub mod bench_root;
pub mod bench_smp;
pub mod bench_smp_linux;
pub mod bochs;
pub mod boot;
pub mod bootfs;
pub mod cli;
pub mod cp;
pub mod cpio;
pub mod direct;
pub mod disk;
pub mod exec;
pub mod exec_bochs;
pub mod flamegraph;
pub mod forwards;
pub mod gdb_remote;
pub mod grub;
pub mod host;
pub mod insn_counts;
pub mod instance;
pub mod instance_cmd;
pub mod instance_server;
pub mod kernel;
pub mod link_stream;
pub mod linux_symbols;
pub mod markers;
pub mod mbr;
pub mod mux;
pub mod process;
pub mod profile;
pub mod profile_gdb;
pub mod profile_insn;
pub mod qemu;
pub mod run;
pub mod selftest;
pub mod shared_text;
pub mod sparse;
pub mod stages;
pub mod stats;
pub mod status;
pub mod terminal;
pub mod user_images;

pub use host::Host;
pub use host::Streams;
pub use status::ExitStatus;
