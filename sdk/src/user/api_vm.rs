//! The hypervisor calls of [`super::api::UserKernel`], passed as
//! `starina::abi::user_vcpu` says: guest RAM in pieces of at most
//! `GUEST_RAM_COPY_MAX` bytes, a vCPU's state and its exit as plain-data
//! blocks.

use super::api::call;
use crate::abi::syscall::SyscallNo;
use crate::abi::user_vcpu::encode_control;
use crate::abi::user_vcpu::encode_injection;
use crate::abi::user_vcpu::UserVcpuState;
use crate::abi::user_vcpu::UserVmExit;
use crate::abi::user_vcpu::GUEST_RAM_COPY_MAX;
use crate::abi::vcpu::Injection;
use crate::abi::vcpu::VcpuControl;
use crate::abi::vcpu::VcpuState;
use crate::abi::vcpu::VmExit;
use crate::abi::Error;
use crate::abi::HandleId;

pub fn vm_create(hypervisor: HandleId, ram_bytes: u64) -> Result<(HandleId, HandleId), Error> {
    let o = call(
        SyscallNo::VmCreate,
        [hypervisor.0 as u64, ram_bytes, 0, 0, 0, 0],
    )?;
    Ok((HandleId(o[0] as u32), HandleId(o[1] as u32)))
}

pub fn guest_ram_read(ram: HandleId, gpa: u64, buf: &mut [u8]) -> Result<(), Error> {
    let mut at = gpa;
    for piece in buf.chunks_mut(GUEST_RAM_COPY_MAX as usize) {
        let len = piece.len() as u64;
        let args = [ram.0 as u64, at, piece.as_mut_ptr() as u64, len, 0, 0];
        call(SyscallNo::GuestRamRead, args)?;
        at = at.checked_add(len).ok_or(Error::InvalidArgument)?;
    }
    Ok(())
}

pub fn guest_ram_write(ram: HandleId, gpa: u64, data: &[u8]) -> Result<(), Error> {
    let mut at = gpa;
    for piece in data.chunks(GUEST_RAM_COPY_MAX as usize) {
        let len = piece.len() as u64;
        let args = [ram.0 as u64, at, piece.as_ptr() as u64, len, 0, 0];
        call(SyscallNo::GuestRamWrite, args)?;
        at = at.checked_add(len).ok_or(Error::InvalidArgument)?;
    }
    Ok(())
}

pub fn vcpu_create(ram: HandleId) -> Result<HandleId, Error> {
    let o = call(SyscallNo::VcpuCreate, [ram.0 as u64, 0, 0, 0, 0, 0])?;
    Ok(HandleId(o[0] as u32))
}

pub fn vcpu_run(vcpu: HandleId, state: &mut VcpuState, inject: Injection) -> Result<VmExit, Error> {
    let mut block = UserVcpuState::from_state(state);
    let mut exit = UserVmExit::default();
    let (kind, arg) = encode_injection(inject);
    call(
        SyscallNo::VcpuRun,
        [
            vcpu.0 as u64,
            &mut block as *mut UserVcpuState as u64,
            &mut exit as *mut UserVmExit as u64,
            kind,
            arg,
            0,
        ],
    )?;
    *state = block.to_state();
    exit.to_exit().ok_or(Error::NotSupported)
}

pub fn vcpu_control(vcpu: HandleId, control: VcpuControl) -> Result<(), Error> {
    let (kind, value) = encode_control(control);
    call(
        SyscallNo::VcpuControl,
        [vcpu.0 as u64, kind, value, 0, 0, 0],
    )
    .map(drop)
}
