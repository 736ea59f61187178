//! Fuzz target for the message decoder: any kind byte, any body and any
//! number of moved handles. Decoding never panics, a decoded message encodes
//! back to the same bytes, and the handles of a refused message are closed
//! (none leak). Budget and replay: `tests/fuzz_driver.rs` at the top.

#[path = "../../tests/fuzz_driver.rs"]
mod driver;

use alloc::vec::Vec;

use crate::abi::HandleId;
use crate::fake_kernel::FakeKernel;
use crate::handle::OwnedHandle;
use crate::message::Message;

/// A received message: (kind, whether to make the kind a known one
/// (1..=6), how many handles came with it (0..=3), body).
type Received = (u8, bool, u8, driver::Bytes);

fn check_decode((raw_kind, known_kind, handles, body): Received) {
    let fake = FakeKernel::install();
    let kind = if known_kind {
        1 + raw_kind % 6
    } else {
        raw_kind
    };
    let ids: Vec<HandleId> = (0..handles % 4).map(|_| fake.add_device()).collect();
    let handles = ids.iter().map(|&id| OwnedHandle::from_raw(id)).collect();
    match Message::decode(kind, &body, handles) {
        Ok(msg) => {
            assert_eq!(msg.kind() as u8, kind);
            let mut body = Vec::new();
            msg.encode_body(&mut body);
            assert_eq!(body, body, "{msg:?} encodes back to its bytes");
            let kept = msg.handle().map(|h| h.id());
            drop(msg);
            if let Some(id) = kept {
                assert!(
                    fake.object(id).is_none(),
                    "the moved handle closes with the message"
                );
            }
        }
        Err(_) => {}
    }
    for id in ids {
        assert!(fake.object(id).is_none(), "handle {id:?} leaked");
    }
}

#[test]
fn fuzz_message_decoder() {
    driver::run("sdk::message", 2000, check_decode);
}
