//! The user-mode dispatcher's hypervisor calls (`starina::abi::user_vcpu`
//! says how they travel): guest RAM copied through a kernel buffer, a
//! vCPU's state and exits as plain-data blocks in user memory. Each runs
//! the same implementation in-kernel components call.

use alloc::vec::Vec;

use starina::abi::syscall::SyscallNo;
use starina::abi::user_vcpu::decode_control;
use starina::abi::user_vcpu::decode_injection;
use starina::abi::user_vcpu::UserVcpuState;
use starina::abi::user_vcpu::UserVmExit;
use starina::abi::user_vcpu::GUEST_RAM_COPY_MAX;
use starina::abi::Error;
use starina::syscall::KernelApi;

use super::dispatch::aspace;
use super::dispatch::handle;
use super::dispatch::Out;
use super::uaccess;
use crate::arch::trap::TrapFrame;
use crate::syscall::KERNEL;

/// Call `no` if it is one of this module's; `None` otherwise.
pub fn call(no: SyscallNo, f: &TrapFrame) -> Option<Result<Out, Error>> {
    let (a0, a1, a2, a3, a4) = (f.rdi, f.rsi, f.rdx, f.r10, f.r8);
    let k = &KERNEL;
    Some(match no {
        SyscallNo::VmCreate => handle(a0)
            .and_then(|h| k.vm_create(h, a1))
            .map(|(vm, ram)| [vm.0 as u64, ram.0 as u64, 0, 0, 0]),
        SyscallNo::GuestRamRead => ram_read(a0, a1, a2, a3),
        SyscallNo::GuestRamWrite => ram_write(a0, a1, a2, a3),
        SyscallNo::VcpuCreate => handle(a0)
            .and_then(|h| k.vcpu_create(h))
            .map(|v| [v.0 as u64, 0, 0, 0, 0]),
        SyscallNo::VcpuRun => vcpu_run(a0, a1, a2, (a3, a4)),
        SyscallNo::VcpuControl => {
            let control = decode_control(a1, a2).ok_or(Error::InvalidArgument);
            control
                .and_then(|c| k.vcpu_control(handle(a0)?, c))
                .map(|_| [0; 5])
        }
        _ => return None,
    })
}

/// A kernel buffer of `len` zeroed bytes (bounded by the caller).
fn buffer(len: u64) -> Result<Vec<u8>, Error> {
    if len > GUEST_RAM_COPY_MAX {
        return Err(Error::InvalidArgument);
    }
    let mut buf = Vec::new();
    buf.try_reserve_exact(len as usize)
        .map_err(|_| Error::OutOfMemory)?;
    buf.resize(len as usize, 0);
    Ok(buf)
}

fn ram_read(ram: u64, gpa: u64, ptr: u64, len: u64) -> Result<Out, Error> {
    let ram = handle(ram)?;
    let a = aspace()?;
    let mut buf = buffer(len)?;
    uaccess::check_range(ptr, len)?;
    uaccess::check_writable(a, ptr, len as usize)?;
    KERNEL.guest_ram_read(ram, gpa, &mut buf)?;
    uaccess::copy_out(a, ptr, &buf)?;
    Ok([0; 5])
}

fn ram_write(ram: u64, gpa: u64, ptr: u64, len: u64) -> Result<Out, Error> {
    let ram = handle(ram)?;
    let mut buf = buffer(len)?;
    uaccess::check_range(ptr, len)?;
    uaccess::copy_in(aspace()?, ptr, &mut buf)?;
    KERNEL.guest_ram_write(ram, gpa, &buf)?;
    Ok([0; 5])
}

fn vcpu_run(vcpu: u64, state_at: u64, exit_at: u64, inject: (u64, u64)) -> Result<Out, Error> {
    let vcpu = handle(vcpu)?;
    let inject = decode_injection(inject.0, inject.1).ok_or(Error::InvalidArgument)?;
    let a = aspace()?;
    let exit_len = core::mem::size_of::<UserVmExit>();
    uaccess::check_range(exit_at, exit_len as u64)?;
    uaccess::check_writable(a, exit_at, exit_len)?;
    let user: UserVcpuState = uaccess::read_struct(a, state_at)?;
    let mut state = user.to_state();
    let exit = KERNEL.vcpu_run(vcpu, &mut state, inject)?;
    uaccess::copy_out(a, state_at, plain_bytes(&UserVcpuState::from_state(&state)))?;
    uaccess::copy_out(a, exit_at, plain_bytes(&UserVmExit::from_exit(&exit)))?;
    Ok([0; 5])
}

/// The bytes of a `user_vcpu` block.
fn plain_bytes<T: Copy>(value: &T) -> &[u8] {
    // SAFETY: `UserVcpuState` and `UserVmExit` are `repr(C)` of `u64`s and
    // arrays of them only: no padding, every byte initialized.
    unsafe {
        core::slice::from_raw_parts(value as *const T as *const u8, core::mem::size_of::<T>())
    }
}
