//! What an x86-64 instruction does to control flow, from its bytes: the
//! shadow call stack follows `call` and `ret`; the other transfers are
//! named so a reader (and a test) can see they are not mistaken for them.

/// The control-flow class of one instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A near call (`E8`, `FF /2`): pushes its return address.
    Call,
    /// A near return (`C3`, `C2 imm16`): pops one.
    Ret,
    /// `iret`/`iretq` (`CF`): returns from an interrupt frame.
    Iret,
    /// Any other transfer: jumps, `syscall`/`sysret`, `int`, far calls.
    Jump,
    /// Falls through to the next instruction.
    Other,
}

/// Legacy prefixes: operand/address size, segment overrides, lock, rep.
fn is_legacy_prefix(b: u8) -> bool {
    matches!(
        b,
        0x66 | 0x67 | 0xf0 | 0xf2 | 0xf3 | 0x26 | 0x2e | 0x36 | 0x3e | 0x64 | 0x65
    )
}

/// The opcode bytes after the prefixes (legacy, then at most one REX).
fn opcode(bytes: &[u8]) -> &[u8] {
    let mut i = 0;
    while i < bytes.len() && is_legacy_prefix(bytes[i]) {
        i += 1;
    }
    if i < bytes.len() && (0x40..=0x4f).contains(&bytes[i]) {
        i += 1;
    }
    &bytes[i..]
}

/// Classifies one instruction (`bytes` is exactly or at least the
/// instruction; unknown or truncated bytes are `Other`).
pub fn classify(bytes: &[u8]) -> Kind {
    let op = opcode(bytes);
    // The ModRM byte's reg field selects the operation of group 5 (FF).
    let reg = |i: usize| op.get(i).map(|m| (m >> 3) & 7);
    match op {
        [0xe8, ..] => Kind::Call,
        [0xff, ..] if reg(1) == Some(2) => Kind::Call,
        [0xff, ..] if matches!(reg(1), Some(3..=5)) => Kind::Jump,
        [0xc3, ..] | [0xc2, ..] => Kind::Ret,
        [0xcf, ..] => Kind::Iret,
        [0xe9, ..] | [0xeb, ..] | [0x70..=0x7f, ..] | [0xe0..=0xe3, ..] => Kind::Jump,
        [0x9a, ..] | [0xca, ..] | [0xcb, ..] | [0xcc..=0xce, ..] | [0xea, ..] => Kind::Jump,
        [0x0f, 0x80..=0x8f, ..] | [0x0f, 0x05, ..] | [0x0f, 0x07, ..] => Kind::Jump,
        [0x0f, 0x34, ..] | [0x0f, 0x35, ..] | [0x0f, 0x01, 0xd8..=0xdb, ..] => Kind::Jump,
        _ => Kind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_direct_and_indirect_near_calls() {
        assert_eq!(classify(&[0xe8, 1, 2, 3, 4]), Kind::Call);
        assert_eq!(classify(&[0xff, 0xd0]), Kind::Call); // call rax
        assert_eq!(classify(&[0x41, 0xff, 0xd3]), Kind::Call); // call r11
        assert_eq!(classify(&[0xff, 0x15, 0, 0, 0, 0]), Kind::Call); // call [rip+0]
        assert_eq!(classify(&[0x3e, 0xff, 0xd0]), Kind::Call); // notrack call rax
    }

    #[test]
    fn returns_and_iret_are_told_apart() {
        assert_eq!(classify(&[0xc3]), Kind::Ret);
        assert_eq!(classify(&[0xf3, 0xc3]), Kind::Ret); // rep ret
        assert_eq!(classify(&[0xc2, 8, 0]), Kind::Ret);
        assert_eq!(classify(&[0x48, 0xcf]), Kind::Iret); // iretq
        assert_eq!(classify(&[0xcb]), Kind::Jump); // far return
    }

    #[test]
    fn jumps_are_not_calls() {
        assert_eq!(classify(&[0xff, 0xe0]), Kind::Jump); // jmp rax
        assert_eq!(classify(&[0xff, 0x25, 0, 0, 0, 0]), Kind::Jump); // jmp [rip]
        assert_eq!(classify(&[0xe9, 0, 0, 0, 0]), Kind::Jump);
        assert_eq!(classify(&[0x74, 0x10]), Kind::Jump); // je
        assert_eq!(classify(&[0x0f, 0x84, 0, 0, 0, 0]), Kind::Jump); // je rel32
        assert_eq!(classify(&[0x0f, 0x05]), Kind::Jump); // syscall
        assert_eq!(classify(&[0x48, 0x0f, 0x07]), Kind::Jump); // sysretq
        assert_eq!(classify(&[0x0f, 0x01, 0xd8]), Kind::Jump); // vmrun
    }

    #[test]
    fn ordinary_instructions_fall_through() {
        assert_eq!(classify(&[0x48, 0x89, 0xe5]), Kind::Other); // mov rbp, rsp
        assert_eq!(classify(&[0xff, 0xc0]), Kind::Other); // inc eax (FF /0)
        assert_eq!(classify(&[0xff, 0x70, 0x08]), Kind::Other); // push [rax+8] (FF /6)
        assert_eq!(classify(&[0x55]), Kind::Other); // push rbp
        assert_eq!(classify(&[]), Kind::Other);
        assert_eq!(classify(&[0x66]), Kind::Other);
    }
}
