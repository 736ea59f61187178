//! The cpio "newc" format (what Linux unpacks as an initramfs).

/// One archive entry.
pub struct Entry<'a> {
    pub name: &'a str,
    pub mode: u32,
    pub data: &'a [u8],
    /// Device numbers, for character devices.
    pub rdev: (u32, u32),
}

/// Entries as a newc archive, with the trailer.
pub fn newc(entries: &[Entry]) -> Vec<u8> {
    let trailer = Entry {
        name: "TRAILER!!!",
        mode: 0,
        data: b"",
        rdev: (0, 0),
    };
    let mut out = Vec::new();
    for (i, e) in entries.iter().chain([&trailer]).enumerate() {
        let fields = [
            i as u32 + 1,
            e.mode,
            0,
            0,
            1,
            0,
            e.data.len() as u32,
            0,
            0,
            e.rdev.0,
            e.rdev.1,
            e.name.len() as u32 + 1,
            0,
        ];
        out.extend_from_slice(b"070701");
        for f in fields {
            out.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        out.extend_from_slice(e.name.as_bytes());
        out.push(0);
        pad4(&mut out);
        out.extend_from_slice(e.data);
        pad4(&mut out);
    }
    out
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

pub const DIR: u32 = 0o040755;
pub const FILE: u32 = 0o100644;
pub const EXECUTABLE: u32 = 0o100755;
pub const CHAR_DEVICE: u32 = 0o020000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_padding() {
        let a = newc(&[Entry {
            name: "init",
            mode: EXECUTABLE,
            data: b"#!",
            rdev: (0, 0),
        }]);
        assert_eq!(&a[..6], b"070701");
        assert_eq!(&a[6..14], b"00000001");
        assert_eq!(&a[14..22], b"000081ED");
        // 110-byte header + "init\0" = 115, padded to 116; then the data.
        assert_eq!(&a[110..115], b"init\0");
        assert_eq!(&a[116..118], b"#!");
        assert_eq!(a.len() % 4, 0);
        assert!(a.windows(10).any(|w| w == b"TRAILER!!!"));
    }
}
