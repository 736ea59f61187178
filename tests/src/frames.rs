//! Process-protocol frames the tests write straight to the host link
//! (`starina_bridge::process`), encoded by the bridge itself so the tests
//! speak exactly what the linux server and the guest agent speak.

use starina_bridge::process::Frame;
use starina_bridge::process::Spawn;

/// A Spawn frame for `argv`, with no environment, working directory or user.
pub fn spawn_frame(id: u32, argv: &[&str]) -> Vec<u8> {
    Frame::Spawn(Spawn::new(id, argv))
        .encode()
        .expect("a test's spawn frame is within the protocol's limits")
}

/// The Panic frame (with its magic): asks the guest kernel to panic.
pub fn panic_frame() -> Vec<u8> {
    Frame::Panic.encode().expect("a Panic frame encodes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_the_bytes_the_protocol_documents() {
        // len 9, type 0x0f, id 0, the magic "PANC" (little-endian).
        assert_eq!(
            panic_frame(),
            [9, 0, 0, 0, 0x0f, 0, 0, 0, 0, 0x43, 0x4e, 0x41, 0x50]
        );
        // len, type 0x01, id, argc, each argument with its length, no
        // environment, no working directory, no user.
        let mut body = vec![0x01, 7, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0];
        body.extend_from_slice(b"ls");
        body.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        let mut frame = (body.len() as u32).to_le_bytes().to_vec();
        frame.extend_from_slice(&body);
        assert_eq!(spawn_frame(7, &["ls"]), frame);
    }
}
