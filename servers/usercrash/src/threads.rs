//! The `threads` request: starts [`THREADS`] short threads one after
//! another, each sending its number back before it ends. Their stacks
//! together are larger than the component's memory budget (16 MiB), so
//! this passes only if an ended thread's stack goes to the next one.

use alloc::format;
use alloc::string::String;

use starina::abi::Readiness;
use starina::abi::Rights;
use starina::channel::MessageBuffer;
use starina::poll::Poll;
use starina::Channel;

/// 600 stacks of 128 KiB would be 75 MiB.
pub const THREADS: u32 = 600;

/// `err` as a failure of `what`.
fn failed(what: &'static str) -> impl Fn(starina::Error) -> String {
    move |err| format!("{what}: {err:?}")
}

/// Runs them; how many reported, or what went wrong.
pub fn run() -> Result<u32, String> {
    let (tx, rx) = Channel::create().map_err(failed("channel_create"))?;
    let poll = Poll::create().map_err(failed("poll_create"))?;
    poll.add(rx.id(), Readiness::READABLE)
        .map_err(failed("poll_add"))?;
    let mut buf = MessageBuffer::new();
    for i in 0..THREADS {
        let handle = tx.handle().duplicate(Rights::DEFAULT);
        let tx = Channel::from_handle(handle.map_err(failed("duplicate"))?);
        starina::thread::spawn(move || {
            let _ = tx.send_data(&i.to_le_bytes());
        })
        .map_err(|err| format!("thread {i} did not start: {err:?}"))?;
        let event = poll.wait_recv(&mut buf).map_err(failed("poll_wait_recv"))?;
        let info = match event.received {
            Some(Ok(info)) => info,
            other => return Err(format!("thread {i}: received {other:?}")),
        };
        if buf.data(&info) != i.to_le_bytes() {
            return Err(format!("thread {i} sent {:?}", buf.data(&info)));
        }
    }
    Ok(THREADS)
}
