use super::*;

/// The position of `e` in [`Error::ALL`]; the match is exhaustive, so a new
/// variant does not compile until it is listed here (and then the test
/// checks it is in `ALL`, numbered, and has its own message).
fn position(e: Error) -> usize {
    use Error::*;
    match e {
        InvalidHandle => 0,
        WrongObjectType => 1,
        MissingRight => 2,
        MessageTooLarge => 3,
        TooManyHandles => 4,
        QueueFull => 5,
        PeerClosed => 6,
        WouldBlock => 7,
        BufferTooSmall => 8,
        OutOfMemory => 9,
        InvalidArgument => 10,
        HandleTableFull => 11,
        AlreadyExists => 12,
        NotFound => 13,
        NotSupported => 14,
        InvalidTransfer => 15,
        MalformedMessage => 16,
        PollEmpty => 17,
        BacklogFull => 18,
        Busy => 19,
        OutsideGuestRam => 20,
        OverBudget => 21,
        BadAddress => 22,
    }
}

struct Text {
    buf: [u8; 128],
    len: usize,
}

impl core::fmt::Write for Text {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.len + s.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(core::fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

fn display(e: Error) -> Text {
    let mut t = Text {
        buf: [0; 128],
        len: 0,
    };
    core::fmt::write(&mut t, format_args!("{e}")).unwrap();
    t
}

#[test]
fn every_error_round_trips() {
    for (i, &e) in Error::ALL.iter().enumerate() {
        assert_eq!(position(e), i, "{e:?} is out of order in Error::ALL");
        assert_eq!(e.as_raw() as usize, i + 1, "{e:?}");
        assert_eq!(Error::from_raw(e.as_raw()), Some(e));
        let text = display(e);
        assert!(text.len > 0, "{e:?} has no message");
        for &other in &Error::ALL[..i] {
            let o = display(other);
            assert_ne!(
                &text.buf[..text.len],
                &o.buf[..o.len],
                "{e:?} and {other:?} read the same"
            );
        }
    }
    for raw in 0..=255u8 {
        let listed = (1..=Error::ALL.len()).contains(&(raw as usize));
        assert_eq!(Error::from_raw(raw).is_some(), listed, "raw {raw}");
    }
}

#[test]
fn new_errors_say_what_happened() {
    assert_eq!(Error::BacklogFull.as_raw(), 19);
    let t = display(Error::BacklogFull);
    assert_eq!(
        &t.buf[..t.len],
        b"send backlog is full: the peer is not reading"
    );
    assert_eq!(Error::Busy.as_raw(), 20);
}

#[test]
fn io_accesses_stay_inside_the_device_ports() {
    assert_eq!(io_port(0x2f8, 8, 0, 1), Ok(0x2f8));
    assert_eq!(io_port(0x2f8, 8, 7, 1), Ok(0x2ff));
    assert_eq!(io_port(0x2f8, 8, 4, 4), Ok(0x2fc));
    assert_eq!(io_port(0x2f8, 8, 6, 2), Ok(0x2fe));
    let bad = [
        (8, 1),
        (6, 4),
        (7, 2),
        (1, 2),
        (2, 4),
        (0, 0),
        (0, 3),
        (0, 8),
        (u16::MAX, 1),
        (u16::MAX, 4),
    ];
    for (offset, width) in bad {
        assert_eq!(
            io_port(0x2f8, 8, offset, width),
            Err(Error::InvalidArgument),
            "{offset}+{width}"
        );
    }
    assert_eq!(io_port(u16::MAX, 8, 4, 1), Err(Error::InvalidArgument));
}

#[test]
fn cpu_load_is_the_busy_share_between_two_samples() {
    let at = |busy_ns, idle_ns| CpuStats {
        busy_ns,
        idle_ns,
        ..CpuStats::default()
    };
    assert_eq!(at(300, 700).busy_permille_since(&CpuStats::default()), 300);
    // Over the last interval only: 900 busy of 1,000.
    assert_eq!(at(1_200, 800).busy_permille_since(&at(300, 700)), 900);
    assert_eq!(at(5, 0).busy_permille_since(&at(0, 0)), 1000);
    // No time passed, or samples swapped: no load, no panic.
    assert_eq!(at(10, 10).busy_permille_since(&at(10, 10)), 0);
    assert_eq!(at(10, 10).busy_permille_since(&at(20, 20)), 0);
    assert_eq!(at(u64::MAX, u64::MAX).busy_permille_since(&at(0, 0)), 500);
}

#[test]
fn device_info_registers_round_trip() {
    use crate::user::device_info;
    let infos = [
        DeviceInfo {
            address: DeviceAddress::Pci {
                bus: 0xfe,
                device: 0x1f,
                function: 7,
                vendor_id: 0x1af4,
                device_id: 0x1041,
            },
            gsi: Some(23),
        },
        DeviceInfo {
            address: DeviceAddress::VirtioMmio {
                base: 0xfeb0_2e00,
                size: 0x200,
                device_id: 1,
            },
            gsi: Some(0),
        },
        DeviceInfo {
            address: DeviceAddress::Uart { io_base: 0x2f8 },
            gsi: None,
        },
    ];
    for info in infos {
        assert_eq!(device_info::decode(device_info::encode(&info)), Some(info));
    }
    assert_eq!(device_info::decode([7, 0, 0, 0]), None);
}
