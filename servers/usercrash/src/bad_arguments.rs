//! Bad system-call arguments from user mode, each with the error the
//! kernel must answer (never a kernel fault): kernel addresses, unmapped
//! addresses, addresses below and above the user half, ranges that wrap,
//! the process's own guard pages, a read-only page to receive into, bad
//! handle numbers, levels and call numbers.

use alloc::format;
use alloc::string::String;

use starina::abi::syscall::SyscallNo;
use starina::abi::user::UserCall;
use starina::abi::user::USER_STACK_SIZE;
use starina::abi::user::USER_STACK_TOP;
use starina::abi::user::USER_START_BLOCK;
use starina::abi::Error;
use starina::testing::raw_syscall;

const KERNEL: u64 = 0xffff_8000_0000_0000;
const UNMAPPED: u64 = 0x0000_5000_0000_0000;
const NON_CANONICAL: u64 = 0x0000_9000_0000_0000;
const LOW: u64 = 0x1000;
const INFO: u64 = 3;

/// What a case is: what it passes, what the kernel answered, and what it
/// must answer.
type Case = (&'static str, Result<[u64; 5], Error>, Error);

fn call(no: SyscallNo, args: [u64; 6]) -> Result<[u64; 5], Error> {
    raw_syscall(no.as_raw(), args)
}

fn expect(what: &str, got: Result<[u64; 5], Error>, want: Error) -> Result<(), String> {
    match got {
        Err(e) if e == want => Ok(()),
        other => Err(format!("{what}: expected {want:?}, got {other:?}")),
    }
}

/// Runs every case; how many bad arguments were refused as they should.
pub fn run() -> Result<usize, String> {
    let buf = b"-a log line from a misaligned pointer (bad_arguments)".to_vec();
    let ok = buf.as_ptr() as u64;
    let main_guard = USER_STACK_TOP - USER_STACK_SIZE - 4096;
    let mapped = raw_syscall(UserCall::MemoryMap as u16, [1, 0, 0, 0, 0, 0])
        .map_err(|e| format!("MemoryMap of one page: {e:?}"))?[0];
    let map_guard = mapped - 4096;
    let log = |ptr: u64, len: u64| call(SyscallNo::Log, [INFO, ptr, len, 0, 0, 0]);
    let bad = Error::BadAddress;
    let cases: [Case; 16] = [
        ("log from a kernel address", log(KERNEL, 8), bad),
        ("log from an unmapped address", log(UNMAPPED, 8), bad),
        ("log from below the user half (0x1000)", log(LOW, 8), bad),
        (
            "log from a non-canonical address",
            log(NON_CANONICAL, 8),
            bad,
        ),
        ("log of a length that wraps", log(ok, u64::MAX), bad),
        (
            "log from the main stack's guard page",
            log(main_guard, 8),
            bad,
        ),
        ("log from a mapping's guard page", log(map_guard, 8), bad),
        (
            "log at an unknown level",
            call(SyscallNo::Log, [9, ok, 8, 0, 0, 0]),
            Error::InvalidArgument,
        ),
        (
            "send from a kernel address",
            call(SyscallNo::ChannelSend, [1, 0, KERNEL, 8, 0, 0]),
            bad,
        ),
        (
            "send of handles from the guard page",
            call(SyscallNo::ChannelSend, [1, 0, ok, 1, main_guard, 1]),
            bad,
        ),
        (
            "console write from a kernel address",
            call(SyscallNo::ConsoleWrite, [1, KERNEL, 8, 0, 0, 0]),
            bad,
        ),
        (
            "console read into a read-only page",
            call(SyscallNo::ConsoleRead, [1, USER_START_BLOCK, 8, 0, 0, 0]),
            bad,
        ),
        (
            "close of a handle number past u32",
            call(SyscallNo::HandleClose, [1 << 40, 0, 0, 0, 0, 0]),
            Error::InvalidHandle,
        ),
        (
            "poll_wait_recv into a read-only page",
            call(SyscallNo::PollWaitRecv, [0, USER_START_BLOCK, 8, 0, 0, 0]),
            bad,
        ),
        (
            "thread start at a kernel address",
            raw_syscall(
                UserCall::ThreadStart as u16,
                [KERNEL, 0, 0, 0, 0, 0],
            ),
            bad,
        ),
        (
            "an unknown call number",
            raw_syscall(999, [0; 6]),
            Error::NotSupported,
        ),
    ];
    for (what, got, want) in cases {
        expect(what, got, want)?;
    }
    // A misaligned pointer to mapped bytes is fine: the kernel copies bytes.
    log(ok + 1, buf.len() as u64 - 1)
        .map_err(|e| format!("log from a misaligned pointer: {e:?}"))?;
    receive_into_read_only_keeps_the_message()?;
    Ok(cases.len() + 1)
}

/// A receive into a page the process may not write is refused before the
/// message is taken: it is still there for a good buffer.
fn receive_into_read_only_keeps_the_message() -> Result<(), String> {
    let [a, b, ..] =
        call(SyscallNo::ChannelCreate, [0; 6]).map_err(|e| format!("channel_create: {e:?}"))?;
    let byte = [b'm'];
    call(
        SyscallNo::ChannelSend,
        [a, 0, byte.as_ptr() as u64, 1, 0, 0],
    )
    .map_err(|e| format!("send: {e:?}"))?;
    expect(
        "recv into a read-only page",
        call(SyscallNo::ChannelRecv, [b, USER_START_BLOCK, 16, 0, 0, 0]),
        Error::BadAddress,
    )?;
    let mut good = [0u8; 16];
    let got = call(
        SyscallNo::ChannelRecv,
        [b, good.as_mut_ptr() as u64, 16, 0, 0, 0],
    )
    .map_err(|e| format!("recv after the refusal: {e:?}"))?;
    if got[0] != 1 || good[0] != b'm' {
        return Err(format!(
            "the message was lost or changed after the refused receive ({got:?})"
        ));
    }
    for h in [a, b] {
        call(SyscallNo::HandleClose, [h, 0, 0, 0, 0, 0]).map_err(|e| format!("close: {e:?}"))?;
    }
    Ok(())
}
