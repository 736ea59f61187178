//! The header every system description table starts with, and the root
//! tables (RSDT, XSDT): a header followed by the physical addresses of
//! the other tables.

use super::checksum_ok;
use super::sig_at;
use super::u32_at;
use super::u64_at;
use super::Error;

/// Signature, length, revision, checksum, OEM and creator ids.
pub const HEADER_LEN: usize = 36;
/// The largest table we read (a MADT of hundreds of CPUs is a few KiB).
pub const MAX_LEN: u32 = 64 * 1024;

pub const RSDT: [u8; 4] = *b"RSDT";
pub const XSDT: [u8; 4] = *b"XSDT";

/// The signature and length from the header at the start of `bytes`:
/// what to read whole next. The length is at least [`HEADER_LEN`] and at
/// most [`MAX_LEN`].
pub fn header(bytes: &[u8]) -> Result<([u8; 4], u32), Error> {
    let signature = sig_at(bytes, 0);
    let len = u32_at(bytes, 4).ok_or(Error::Short {
        signature,
        len: bytes.len(),
    })?;
    if (len as usize) < HEADER_LEN || len > MAX_LEN {
        return Err(Error::BadLength { signature, len });
    }
    Ok((signature, len))
}

/// Checks that `bytes` start with a whole table with signature `expected`
/// whose bytes add up to zero; returns the table (its length, no more).
pub fn check(bytes: &[u8], expected: [u8; 4]) -> Result<&[u8], Error> {
    let (signature, len) = header(bytes)?;
    if signature != expected {
        return Err(Error::BadSignature {
            expected,
            found: signature,
        });
    }
    let table = bytes.get(..len as usize).ok_or(Error::Short {
        signature,
        len: bytes.len(),
    })?;
    if !checksum_ok(table) {
        return Err(Error::BadChecksum { signature });
    }
    Ok(table)
}

/// The table addresses in a checked RSDT (4 bytes each) or XSDT (8).
pub fn root_entries(table: &[u8], wide: bool) -> impl Iterator<Item = u64> + '_ {
    let size = if wide { 8 } else { 4 };
    table
        .get(HEADER_LEN..)
        .unwrap_or_default()
        .chunks_exact(size)
        .map(move |e| match wide {
            true => u64_at(e, 0).unwrap_or(0),
            false => u64::from(u32_at(e, 0).unwrap_or(0)),
        })
}

/// A table with `signature` and `body` after its header, checksummed
/// (for host tests here and in `madt`).
#[cfg(test)]
pub fn table(signature: [u8; 4], body: &[u8]) -> Vec<u8> {
    let mut t = vec![0u8; HEADER_LEN];
    t[..4].copy_from_slice(&signature);
    t[4..8].copy_from_slice(&((HEADER_LEN + body.len()) as u32).to_le_bytes());
    t[8] = 1;
    t[10..16].copy_from_slice(b"STARIN");
    t.extend_from_slice(body);
    super::fix_checksum(&mut t, 9);
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rsdt_and_xsdt_entries() {
        let mut body = Vec::new();
        body.extend_from_slice(&0x7fe_2000u32.to_le_bytes());
        body.extend_from_slice(&0x7fe_3000u32.to_le_bytes());
        let rsdt = table(RSDT, &body);
        let checked = check(&rsdt, RSDT).unwrap();
        assert_eq!(
            root_entries(checked, false).collect::<Vec<_>>(),
            [0x7fe_2000, 0x7fe_3000]
        );
        let xsdt = table(XSDT, &0x1_0000_0000u64.to_le_bytes());
        let checked = check(&xsdt, XSDT).unwrap();
        assert_eq!(
            root_entries(checked, true).collect::<Vec<_>>(),
            [0x1_0000_0000]
        );
    }

    #[test]
    fn refuses_bad_tables() {
        let good = table(RSDT, &[0; 8]);
        assert!(matches!(
            check(&good[..3], RSDT),
            Err(Error::Short { len: 3, .. })
        ));
        assert!(matches!(
            check(&good[..40], RSDT),
            Err(Error::Short { len: 40, .. })
        ));
        assert!(matches!(
            check(&good, XSDT),
            Err(Error::BadSignature { .. })
        ));
        let mut bad = good.clone();
        bad[40] = 1;
        assert_eq!(
            check(&bad, RSDT),
            Err(Error::BadChecksum { signature: RSDT })
        );
        for len in [0u32, 35, MAX_LEN + 1] {
            let mut bad = good.clone();
            bad[4..8].copy_from_slice(&len.to_le_bytes());
            assert_eq!(
                check(&bad, RSDT),
                Err(Error::BadLength {
                    signature: RSDT,
                    len
                })
            );
        }
    }
}
