//! The Root System Description Pointer: where ACPI's tables start. The
//! loader may give its address (PVH's `rsdp_paddr`) or a copy of it
//! (Multiboot2's ACPI tags); otherwise it lies on a 16-byte boundary in the
//! EBDA's first KiB or in the BIOS area 0xE0000-0xFFFFF ([`scan`]).

use super::checksum_ok;
use super::sig_at;
use super::u32_at;
use super::u64_at;
use super::Error;

const SIGNATURE: &[u8; 8] = b"RSD PTR ";
/// ACPI 1.0's structure: signature, checksum, OEM id, revision, RSDT.
pub const V1_LEN: usize = 20;
/// ACPI 2.0's: plus length, XSDT, extended checksum, reserved.
pub const V2_LEN: usize = 36;

/// The root table the RSDP names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Root {
    /// 32-bit entries.
    Rsdt(u32),
    /// 64-bit entries (ACPI 2.0 and later).
    Xsdt(u64),
}

fn short(len: usize) -> Error {
    Error::Short {
        signature: sig_at(SIGNATURE, 0),
        len,
    }
}

/// Reads an RSDP from the start of `bytes`: the XSDT when revision 2 or
/// later names one (its extended checksum checked), else the RSDT.
pub fn parse(bytes: &[u8]) -> Result<Root, Error> {
    let v1 = bytes.get(..V1_LEN).ok_or(short(bytes.len()))?;
    if &v1[..8] != SIGNATURE {
        return Err(Error::BadSignature {
            expected: sig_at(SIGNATURE, 0),
            found: sig_at(v1, 0),
        });
    }
    if !checksum_ok(v1) {
        return Err(Error::BadChecksum {
            signature: sig_at(SIGNATURE, 0),
        });
    }
    let rsdt = u32_at(v1, 16).unwrap_or(0);
    let revision = v1[15];
    if revision >= 2 {
        let len = u32_at(bytes, 20).ok_or(short(bytes.len()))?;
        if (len as usize) < V2_LEN || len > 4096 {
            return Err(Error::BadLength {
                signature: sig_at(SIGNATURE, 0),
                len,
            });
        }
        let v2 = bytes.get(..len as usize).ok_or(short(bytes.len()))?;
        let xsdt = u64_at(v2, 24).unwrap_or(0);
        if checksum_ok(v2) && xsdt != 0 {
            return Ok(Root::Xsdt(xsdt));
        }
    }
    Ok(Root::Rsdt(rsdt))
}

/// The offset of the first valid RSDP on a 16-byte boundary of `area`.
pub fn scan(area: &[u8]) -> Option<usize> {
    (0..area.len().saturating_sub(V1_LEN - 1))
        .step_by(16)
        .find(|&at| area[at..].starts_with(SIGNATURE) && parse(&area[at..]).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acpi::fix_checksum;

    /// An RSDP of `revision` naming RSDT 0x7fe0000 (and XSDT 0x7fe1000 from
    /// revision 2).
    fn rsdp(revision: u8) -> Vec<u8> {
        let mut b = vec![0u8; if revision >= 2 { V2_LEN } else { V1_LEN }];
        b[..8].copy_from_slice(SIGNATURE);
        b[9..15].copy_from_slice(b"BOCHS ");
        b[15] = revision;
        b[16..20].copy_from_slice(&0x7fe_0000u32.to_le_bytes());
        fix_checksum(&mut b[..V1_LEN], 8);
        if revision >= 2 {
            b[20..24].copy_from_slice(&(V2_LEN as u32).to_le_bytes());
            b[24..32].copy_from_slice(&0x7fe_1000u64.to_le_bytes());
            fix_checksum(&mut b, 32);
        }
        b
    }

    #[test]
    fn reads_rsdt_or_xsdt() {
        assert_eq!(parse(&rsdp(0)), Ok(Root::Rsdt(0x7fe_0000)));
        assert_eq!(parse(&rsdp(2)), Ok(Root::Xsdt(0x7fe_1000)));
        let mut bad_extended = rsdp(2);
        bad_extended[33] = 1;
        assert_eq!(
            parse(&bad_extended),
            Ok(Root::Rsdt(0x7fe_0000)),
            "falls back to the RSDT"
        );
    }

    #[test]
    fn refuses_bad_rsdps() {
        assert!(matches!(
            parse(&rsdp(0)[..10]),
            Err(Error::Short { len: 10, .. })
        ));
        let mut bad = rsdp(0);
        bad[0] = b'X';
        assert!(matches!(parse(&bad), Err(Error::BadSignature { .. })));
        let mut bad = rsdp(0);
        bad[16] ^= 1;
        assert!(matches!(parse(&bad), Err(Error::BadChecksum { .. })));
        let mut bad = rsdp(2);
        bad[20..24].copy_from_slice(&0xffff_ffffu32.to_le_bytes());
        fix_checksum(&mut bad[..V1_LEN], 8);
        assert!(matches!(parse(&bad), Err(Error::BadLength { .. })));
        assert!(matches!(
            parse(&rsdp(2)[..30]),
            Err(Error::Short { len: 30, .. })
        ));
    }

    #[test]
    fn scan_finds_a_valid_rsdp_on_a_16_byte_boundary() {
        let mut area = vec![0u8; 256];
        // A signature off the boundary and one with a bad checksum first.
        area[8..16].copy_from_slice(SIGNATURE);
        area[32..32 + V1_LEN].copy_from_slice(&rsdp(0));
        area[40] ^= 0xff;
        area[96..96 + V2_LEN].copy_from_slice(&rsdp(2));
        assert_eq!(scan(&area), Some(96));
        assert_eq!(scan(&area[..100]), None, "cut short");
        assert_eq!(scan(&[]), None);
    }
}
