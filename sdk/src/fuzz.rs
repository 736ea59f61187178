//! Fuzz target for the message decoder: any kind byte, any body and any
//! number of moved handles. Decoding never panics, a decoded message encodes
//! back to the same bytes, and the handles of a refused message are closed
//! (none leak). Budget and replay: `tests/fuzz_driver.rs` at the top.

#[path = "../../tests/fuzz_driver.rs"]
mod driver;

use alloc::string::String;
use alloc::vec::Vec;

use crate::abi::HandleId;
use crate::fake_kernel::FakeKernel;
use crate::handle::OwnedHandle;
use crate::message::Message;

/// A received message: the kind (made a known one, 1..=6, when the flag is
/// set), how many handles came with it (0..=3), and the body: optional
/// call id and code fields, then text or raw bytes.
type Received = (
    (u8, bool, u8),
    (Option<u32>, Option<u16>),
    Result<String, driver::Bytes>,
);

fn body_of(
    (call_id, code): (Option<u32>, Option<u16>),
    tail: &Result<String, driver::Bytes>,
) -> Vec<u8> {
    let mut body = Vec::new();
    if let Some(id) = call_id {
        body.extend_from_slice(&id.to_le_bytes());
    }
    if let Some(code) = code {
        body.extend_from_slice(&code.to_le_bytes());
    }
    match tail {
        Ok(text) => body.extend_from_slice(text.as_bytes()),
        Err(raw) => body.extend_from_slice(raw),
    }
    body
}

fn check_decode(((raw_kind, known_kind, handles), fields, tail): Received) {
    let fake = FakeKernel::install();
    let kind = if known_kind {
        1 + raw_kind % 6
    } else {
        raw_kind
    };
    let body = body_of(fields, &tail);
    let ids: Vec<HandleId> = (0..handles % 4).map(|_| fake.add_device()).collect();
    let handles = ids.iter().map(|&id| OwnedHandle::from_raw(id)).collect();
    // A refused message is fine: what matters is that its handles close.
    if let Ok(msg) = Message::decode(kind, &body, handles) {
        assert_eq!(msg.kind() as u8, kind);
        let mut encoded = Vec::new();
        msg.encode_body(&mut encoded);
        assert_eq!(encoded, body, "{msg:?} encodes back to its bytes");
        let kept = msg.handle().map(|h| h.id());
        drop(msg);
        if let Some(id) = kept {
            assert!(
                fake.object(id).is_none(),
                "the moved handle closes with the message"
            );
        }
    }
    for id in ids {
        assert!(fake.object(id).is_none(), "handle {id:?} leaked");
    }
}

#[test]
fn fuzz_message_decoder() {
    driver::run("sdk::message", 2000, check_decode);
}
