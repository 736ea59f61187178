//! The user-mode runtime (feature `user`): what a component's crate links
//! when it is built as a freestanding ELF for ring 3 (`isolation = "user"`
//! in its spec). The component's code is the same: the SDK reaches the
//! kernel through [`KernelApi`](crate::syscall::KernelApi) either way, here
//! implemented with the `syscall` instruction ([`api::UserKernel`]).
//!
//! An image's binary is one line, [`user_image!`](crate::user_image): the
//! entry point (`_start`, which reads the start block the kernel mapped,
//! rebuilds the component's `RawEnv` and runs its generated start
//! function), the global allocator ([`heap::Heap`]) and the panic handler
//! (the message logged, the process ended as a panic).

pub mod api;
mod api_system;
mod api_vm;
pub mod heap;
mod mem;
mod raw;
mod thread;

pub use heap::Heap;

use alloc::string::String;

use crate::abi::user::StartBlock;
use crate::abi::user::StartEntry;
use crate::abi::user::START_MAGIC;
use crate::abi::user::USER_START_BLOCK;
use crate::env::RawEnv;

static KERNEL: api::UserKernel = api::UserKernel;

/// The exit status of a process that panicked (as a command's, 134).
const PANIC_STATUS: i32 = 134;

/// The bytes of the start block the kernel mapped read-only at
/// `USER_START_BLOCK` for the life of the process.
#[allow(unsafe_code)]
fn start_block() -> &'static [u8] {
    // SAFETY: the kernel maps the block (header, entries, names) before the
    // first thread runs and never unmaps or changes it; its header says how
    // long it is, and the first read covers only the header.
    unsafe {
        let header = &*(USER_START_BLOCK as *const StartBlock);
        let len = core::mem::size_of::<StartBlock>()
            + header.count as usize * core::mem::size_of::<StartEntry>()
            + names_len(header);
        core::slice::from_raw_parts(USER_START_BLOCK as *const u8, len)
    }
}

/// How far the names reach past the entries (the kernel writes the
/// component's name, then each entry's, contiguously).
#[allow(unsafe_code)]
fn names_len(header: &StartBlock) -> usize {
    let entries = USER_START_BLOCK as usize + core::mem::size_of::<StartBlock>();
    let mut len = header.name_len as usize;
    for i in 0..header.count as usize {
        // SAFETY: as in `start_block`: entry `i` < `count` is in the block.
        let e =
            unsafe { &*((entries + i * core::mem::size_of::<StartEntry>()) as *const StartEntry) };
        len += e.name_len as usize;
    }
    len
}

fn text(block: &[u8], offset: u32, len: u32) -> &'static str {
    let bytes = block
        .get(offset as usize..(offset + len) as usize)
        .unwrap_or(&[]);
    let s = String::from_utf8_lossy(bytes).into_owned();
    alloc::boxed::Box::leak(s.into_boxed_str())
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// The environment the start block describes.
fn raw_env() -> RawEnv {
    let block = start_block();
    let magic = block
        .get(..8)
        .map_or(0, |s| u64::from_le_bytes(s.try_into().unwrap_or([0; 8])));
    if magic != START_MAGIC {
        panic!("starina: no start block from the kernel");
    }
    let (instance, count) = (read_u32(block, 8), read_u32(block, 12));
    let name = text(block, read_u32(block, 16), read_u32(block, 20));
    let mut env = RawEnv::new(name, instance);
    for i in 0..count as usize {
        let at = core::mem::size_of::<StartBlock>() + i * core::mem::size_of::<StartEntry>();
        let field = text(block, read_u32(block, at), read_u32(block, at + 4));
        env.push(field, crate::abi::HandleId(read_u32(block, at + 8)));
    }
    env
}

/// A raw system call (`crate::testing::raw_syscall`).
pub fn raw_call(no: u16, args: [u64; 6]) -> Result<[u64; 5], crate::abi::Error> {
    let r = raw::syscall(no, args);
    match r.status {
        0 => Ok(r.out),
        raw => Err(u8::try_from(raw)
            .ok()
            .and_then(crate::abi::Error::from_raw)
            .unwrap_or(crate::abi::Error::NotSupported)),
    }
}

/// The entry point's body: the kernel table and the logger first, then
/// the component's `main` through its generated start function; a return
/// ends the process with status 0.
pub fn start(main: fn(RawEnv)) -> ! {
    crate::syscall::register(&KERNEL);
    crate::logger::init(log::LevelFilter::Info);
    main(raw_env());
    crate::syscall::kernel().process_exit(0)
}

/// The panic handler's body: the message logged, the process ended.
pub fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    log::error!("panicked: {info}");
    crate::syscall::kernel().process_exit(PANIC_STATUS)
}

/// Defines a user image's entry point, allocator and panic handler around
/// a component's generated start function:
/// `starina::user_image!(echo::__starina_start);`
#[macro_export]
macro_rules! user_image {
    ($start:path) => {
        #[global_allocator]
        static HEAP: $crate::user::Heap = $crate::user::Heap::new();

        #[panic_handler]
        fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
            $crate::user::panic(info)
        }

        #[no_mangle]
        extern "C" fn _start() -> ! {
            $crate::user::start($start)
        }
    };
}
