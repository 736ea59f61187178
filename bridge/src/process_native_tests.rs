//! Tests of the native-command frames (guest → host requests for native
//! commands, and their output and status back).

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::*;

fn native_frames() -> Vec<Frame> {
    vec![
        Frame::NativeSpawn(NativeSpawn {
            id: 1,
            argv: vec!["cat".into(), "/www/index.html".into(), "✓".into()],
            vars: vec![
                ("PWD".into(), "/www".into()),
                ("EMPTY".into(), String::new()),
            ],
        }),
        Frame::NativeSpawn(NativeSpawn::default()),
        Frame::NativeStdin {
            id: 2,
            data: b"1\n2\n".to_vec(),
        },
        Frame::NativeStdin {
            id: 2,
            data: vec![],
        },
        Frame::NativeStdinClose { id: 2 },
        Frame::NativeKill { id: 3 },
        Frame::NativeOutputAck {
            id: 3,
            bytes: 65536,
        },
        Frame::NativeStdout {
            id: 4,
            data: vec![0xff; 3000],
        },
        Frame::NativeStderr {
            id: 4,
            data: b"boom".to_vec(),
        },
        Frame::NativeExited { id: 4, status: 141 },
        Frame::NativeExited { id: 4, status: -1 },
        Frame::NativeSpawnFailed {
            id: 5,
            status: 127,
            reason: "no native command 'nosuch'".into(),
        },
        Frame::NativeStdinAck { id: 6, bytes: 1 },
    ]
}

fn raw(frame_type: u8, id: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = ((HEADER_LEN + payload.len()) as u32).to_le_bytes().to_vec();
    v.push(frame_type);
    v.extend_from_slice(&id.to_le_bytes());
    v.extend_from_slice(payload);
    v
}

#[test]
fn native_frames_round_trip() {
    let frames = native_frames();
    let mut stream = Vec::new();
    for frame in &frames {
        let bytes = frame.encode().unwrap();
        assert_eq!(bytes.len(), LEN_PREFIX + frame.encoded_len(), "{frame:?}");
        assert_eq!(Frame::decode_body(&bytes[4..]), Ok(frame.clone()));
        stream.extend_from_slice(&bytes);
    }
    // In pieces of any size, as a socket or the console delivers them.
    for chunk in [1, 3, 64, stream.len()] {
        let mut d = FrameDecoder::new();
        let mut got = Vec::new();
        for piece in stream.chunks(chunk) {
            d.push(piece);
            while let Some(r) = d.next() {
                got.push(r.unwrap());
            }
        }
        assert_eq!(got, frames, "chunk {chunk}");
    }
}

#[test]
fn native_layouts_are_stable() {
    let spawn = Frame::NativeSpawn(NativeSpawn {
        id: 7,
        argv: vec!["ps".into()],
        vars: vec![("A".into(), "b".into())],
    });
    assert_eq!(
        spawn.encode().unwrap(),
        [
            29, 0, 0, 0, 0x8b, 7, 0, 0, 0, // header
            1, 0, 0, 0, 2, 0, 0, 0, b'p', b's', // argv
            1, 0, 0, 0, 1, 0, 0, 0, b'A', 1, 0, 0, 0, b'b', // vars
        ]
    );
    let exited = Frame::NativeExited { id: 7, status: 1 };
    assert_eq!(
        exited.encode().unwrap(),
        [9, 0, 0, 0, 0x13, 7, 0, 0, 0, 1, 0, 0, 0]
    );
    let kill = Frame::NativeKill { id: 7 };
    assert_eq!(kill.encode().unwrap(), [5, 0, 0, 0, 0x8e, 7, 0, 0, 0]);
}

#[test]
fn malformed_native_frames_skip_one_frame() {
    let spawn = ty::NATIVE_SPAWN;
    let cases: Vec<(Vec<u8>, ProtoError)> = vec![
        // An argument that is not UTF-8.
        (
            raw(spawn, 1, &[1, 0, 0, 0, 1, 0, 0, 0, 0xff, 0, 0, 0, 0]),
            ProtoError::InvalidUtf8 { frame_type: spawn },
        ),
        // A billion arguments announced, none there.
        (
            raw(spawn, 1, &[0, 0, 0, 0x40]),
            ProtoError::Truncated { frame_type: spawn },
        ),
        // A variable without its value.
        (
            raw(spawn, 1, &[0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, b'K']),
            ProtoError::Truncated { frame_type: spawn },
        ),
        // No vars count at all.
        (
            raw(spawn, 1, &[0, 0, 0, 0]),
            ProtoError::Truncated { frame_type: spawn },
        ),
        (
            raw(spawn, 1, &[0, 0, 0, 0, 0, 0, 0, 0, 9]),
            ProtoError::TrailingBytes { frame_type: spawn },
        ),
        (
            raw(ty::NATIVE_KILL, 1, &[9]),
            ProtoError::TrailingBytes {
                frame_type: ty::NATIVE_KILL,
            },
        ),
        (
            raw(ty::NATIVE_OUTPUT_ACK, 1, &[1, 0]),
            ProtoError::Truncated {
                frame_type: ty::NATIVE_OUTPUT_ACK,
            },
        ),
        (
            raw(
                ty::NATIVE_SPAWN_FAILED,
                1,
                &[127, 0, 0, 0, 9, 0, 0, 0, b'x'],
            ),
            ProtoError::Truncated {
                frame_type: ty::NATIVE_SPAWN_FAILED,
            },
        ),
        (
            raw(ty::NATIVE_EXITED, 1, &[]),
            ProtoError::Truncated {
                frame_type: ty::NATIVE_EXITED,
            },
        ),
    ];
    for (bytes, err) in cases {
        let mut d = FrameDecoder::new();
        d.push(&bytes);
        d.push(&Frame::NativeKill { id: 9 }.encode().unwrap());
        assert_eq!(d.next(), Some(Err(err.clone())));
        assert!(!err.is_fatal());
        assert_eq!(
            d.next(),
            Some(Ok(Frame::NativeKill { id: 9 })),
            "after {err}"
        );
        assert_eq!(d.next(), None);
    }
}

#[test]
fn oversized_native_spawn_is_refused_by_the_encoder() {
    let spawn = Frame::NativeSpawn(NativeSpawn {
        id: 1,
        argv: vec!["x".repeat(MAX_FRAME_LEN)],
        vars: vec![],
    });
    assert!(matches!(
        spawn.encode(),
        Err(ProtoError::FrameTooLarge { .. })
    ));
}

/// Mutated native frames never panic the decoder, and whatever decodes
/// encodes back to the same bytes.
#[test]
fn mutated_native_frames_never_panic() {
    let valid: Vec<Vec<u8>> = native_frames()
        .iter()
        .map(|f| f.encode().unwrap())
        .collect();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..5000 {
        let mut f = valid[(next() as usize) % valid.len()].clone();
        let i = LEN_PREFIX + (next() as usize) % (f.len() - LEN_PREFIX);
        f[i] = next() as u8;
        if next() % 2 == 0 {
            let keep = LEN_PREFIX + (next() as usize) % (f.len() - LEN_PREFIX + 1);
            f.truncate(keep);
            let len = (f.len() - LEN_PREFIX) as u32;
            f[..4].copy_from_slice(&len.to_le_bytes());
        }
        if f.len() - LEN_PREFIX < HEADER_LEN {
            continue;
        }
        if let Ok(frame) = Frame::decode_body(&f[LEN_PREFIX..]) {
            assert_eq!(frame.encode().unwrap(), f, "{frame:?}");
        }
    }
}
