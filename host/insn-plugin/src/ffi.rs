//! The C interface between QEMU 7.2 and this plugin: the symbols QEMU
//! looks up (`qemu_plugin_version`, `qemu_plugin_install`), the API
//! functions it exports to plugins (declared here from the documented
//! `qemu-plugin.h`), and the callbacks it calls.

use std::ffi::c_char;
use std::ffi::c_int;
use std::ffi::c_uint;
use std::ffi::c_void;
use std::ffi::CStr;
use std::ffi::CString;
use std::path::PathBuf;

use crate::classify::classify;
use crate::classify::Kind;
use crate::control;
use crate::shadow::Profile;
use crate::shadow::Transfer;

/// Opaque handles QEMU passes to the translation callback.
#[repr(C)]
pub struct Tb {
    _private: [u8; 0],
}
#[repr(C)]
pub struct Insn {
    _private: [u8; 0],
}

/// The start of `qemu_info_t` (only what is read).
#[repr(C)]
pub struct QemuInfo {
    target_name: *const c_char,
    version_min: c_int,
    version_cur: c_int,
    system_emulation: bool,
}

type VcpuUdataCb = extern "C" fn(vcpu: c_uint, udata: *mut c_void);
type MemCb = extern "C" fn(vcpu: c_uint, info: u32, vaddr: u64, udata: *mut c_void);
type TbTransCb = extern "C" fn(id: u64, tb: *mut Tb);
type AtExitCb = extern "C" fn(id: u64, udata: *mut c_void);

/// `enum qemu_plugin_cb_flags`: QEMU_PLUGIN_CB_NO_REGS.
const CB_NO_REGS: c_int = 0;
/// `enum qemu_plugin_mem_rw`.
const MEM_RW: c_int = 3;

extern "C" {
    fn qemu_plugin_register_vcpu_tb_trans_cb(id: u64, cb: TbTransCb);
    fn qemu_plugin_register_vcpu_tb_exec_cb(
        tb: *mut Tb,
        cb: VcpuUdataCb,
        flags: c_int,
        udata: *mut c_void,
    );
    fn qemu_plugin_register_vcpu_insn_exec_cb(
        insn: *mut Insn,
        cb: VcpuUdataCb,
        flags: c_int,
        udata: *mut c_void,
    );
    fn qemu_plugin_mem_is_store(info: u32) -> bool;
    fn qemu_plugin_register_vcpu_mem_cb(
        insn: *mut Insn,
        cb: MemCb,
        flags: c_int,
        rw: c_int,
        udata: *mut c_void,
    );
    fn qemu_plugin_register_atexit_cb(id: u64, cb: AtExitCb, udata: *mut c_void);
    fn qemu_plugin_tb_n_insns(tb: *const Tb) -> usize;
    fn qemu_plugin_tb_vaddr(tb: *const Tb) -> u64;
    fn qemu_plugin_tb_get_insn(tb: *const Tb, idx: usize) -> *mut Insn;
    fn qemu_plugin_insn_data(insn: *const Insn) -> *const c_void;
    fn qemu_plugin_insn_size(insn: *const Insn) -> usize;
    fn qemu_plugin_outs(text: *const c_char);
}

/// The plugin API version this plugin was written against (QEMU 7.2
/// accepts 0 to 1).
#[no_mangle]
pub static qemu_plugin_version: c_int = 1;

/// A translated block: where it starts and how many instructions it has.
/// Leaked: QEMU may run a block's code for as long as it lives.
struct Block {
    addr: u64,
    insns: u64,
}

fn say(text: &str) {
    if let Ok(text) = CString::new(format!("starina-insn-plugin: {text}\n")) {
        // SAFETY: `text` is a NUL-terminated string alive for the call.
        unsafe { qemu_plugin_outs(text.as_ptr()) };
    }
}

fn with_profile(f: impl FnOnce(&mut Profile)) {
    if let Some(s) = control::state().as_mut() {
        if !s.frozen {
            f(&mut s.profile);
        }
    }
}

extern "C" fn on_block(vcpu: c_uint, udata: *mut c_void) {
    // SAFETY: `udata` is the `Block` leaked in `on_translate`, never freed.
    let block = unsafe { &*(udata as *const Block) };
    with_profile(|p| p.block(vcpu as usize, block.addr, block.insns));
}

extern "C" fn on_call(vcpu: c_uint, _udata: *mut c_void) {
    with_profile(|p| p.arm(vcpu as usize, Transfer::Call));
}

extern "C" fn on_ret(vcpu: c_uint, _udata: *mut c_void) {
    with_profile(|p| p.arm(vcpu as usize, Transfer::Ret));
}

extern "C" fn on_iret(vcpu: c_uint, _udata: *mut c_void) {
    with_profile(|p| p.iret(vcpu as usize));
}

fn access(vcpu: c_uint, transfer: Transfer, info: u32, vaddr: u64) {
    // SAFETY: `info` is the handle QEMU passed to this memory callback.
    let store = unsafe { qemu_plugin_mem_is_store(info) };
    with_profile(|p| p.access(vcpu as usize, transfer, store, vaddr));
}

extern "C" fn on_call_access(vcpu: c_uint, info: u32, vaddr: u64, _udata: *mut c_void) {
    access(vcpu, Transfer::Call, info, vaddr);
}

extern "C" fn on_ret_access(vcpu: c_uint, info: u32, vaddr: u64, _udata: *mut c_void) {
    access(vcpu, Transfer::Ret, info, vaddr);
}

/// Hooks a call or ret: when it starts, and its stack access (a call's
/// store of its return address, a ret's load of it). Both kinds of access
/// are asked for: QEMU 7.2 reports a block-ending load to few callbacks
/// registered for loads only.
fn instrument(insn: *mut Insn) {
    // SAFETY: `insn` is valid during the translation callback; QEMU's
    // data pointer covers `qemu_plugin_insn_size` bytes for that long.
    let bytes = unsafe {
        let data = qemu_plugin_insn_data(insn) as *const u8;
        std::slice::from_raw_parts(data, qemu_plugin_insn_size(insn))
    };
    let (start, access): (VcpuUdataCb, MemCb) = match classify(bytes) {
        Kind::Call => (on_call, on_call_access),
        Kind::Ret => (on_ret, on_ret_access),
        Kind::Iret => {
            // SAFETY: as below; no memory callback is needed.
            unsafe {
                qemu_plugin_register_vcpu_insn_exec_cb(
                    insn,
                    on_iret,
                    CB_NO_REGS,
                    std::ptr::null_mut(),
                )
            };
            return;
        }
        Kind::Jump | Kind::Other => return,
    };
    let none = std::ptr::null_mut();
    // SAFETY: `insn` is being translated; the callbacks are plain
    // functions that ignore their user data.
    unsafe {
        qemu_plugin_register_vcpu_insn_exec_cb(insn, start, CB_NO_REGS, none);
        qemu_plugin_register_vcpu_mem_cb(insn, access, CB_NO_REGS, MEM_RW, none);
    }
}

extern "C" fn on_translate(_id: u64, tb: *mut Tb) {
    // SAFETY: `tb` is the block QEMU is translating, valid for this call.
    let (addr, n) = unsafe { (qemu_plugin_tb_vaddr(tb), qemu_plugin_tb_n_insns(tb)) };
    for i in 0..n {
        // SAFETY: `i` is below the block's instruction count.
        instrument(unsafe { qemu_plugin_tb_get_insn(tb, i) });
    }
    let block = Box::leak(Box::new(Block {
        addr,
        insns: n as u64,
    }));
    // SAFETY: `block` lives forever; `on_block` only reads it.
    unsafe {
        qemu_plugin_register_vcpu_tb_exec_cb(
            tb,
            on_block,
            CB_NO_REGS,
            block as *mut Block as *mut c_void,
        )
    };
}

extern "C" fn on_exit(_id: u64, _udata: *mut c_void) {
    if let Err(e) = control::dump() {
        say(&e);
    }
}

/// Refuses what this plugin does not understand: a user-mode QEMU, a
/// guest other than x86-64, an API newer than 7.2's.
fn check_guest(info: Option<&QemuInfo>) -> Result<(), String> {
    let info = info.ok_or("no qemu_info_t")?;
    if info.version_min > qemu_plugin_version {
        return Err(format!(
            "QEMU wants plugin API {}..{}, this plugin speaks {qemu_plugin_version}",
            info.version_min, info.version_cur
        ));
    }
    // SAFETY: QEMU's target name is a NUL-terminated static string.
    let target = unsafe { CStr::from_ptr(info.target_name) }.to_string_lossy();
    if target != "x86_64" || !info.system_emulation {
        return Err(format!(
            "needs qemu-system-x86_64, not a {target} {}",
            if info.system_emulation {
                "system"
            } else {
                "user-mode"
            }
        ));
    }
    Ok(())
}

/// `out=PATH` and `ctl=SOCKET` from the plugin's arguments.
fn parse_args(args: &[String]) -> Result<(PathBuf, String), String> {
    let (mut out, mut ctl) = (None, None);
    for arg in args {
        match arg.split_once('=') {
            Some(("out", path)) if !path.is_empty() => out = Some(PathBuf::from(path)),
            Some(("ctl", path)) if !path.is_empty() => ctl = Some(path.to_string()),
            _ => return Err(format!("unknown argument '{arg}' (out=PATH, ctl=SOCKET)")),
        }
    }
    Ok((
        out.ok_or("out=PATH is required")?,
        ctl.ok_or("ctl=SOCKET is required")?,
    ))
}

/// Called by QEMU once, when it loads the plugin. Non-zero refuses to load.
///
/// # Safety
///
/// QEMU passes `argc` valid NUL-terminated strings in `argv`.
#[no_mangle]
pub unsafe extern "C" fn qemu_plugin_install(
    id: u64,
    info: *const QemuInfo,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    // SAFETY: per this function's contract, `argv` holds `argc` strings.
    let args: Vec<String> = (0..argc.max(0) as usize)
        .map(|i| {
            unsafe { CStr::from_ptr(*argv.add(i)) }
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    // SAFETY: QEMU passes a valid `qemu_info_t` for the call.
    if let Err(e) = check_guest(unsafe { info.as_ref() }) {
        say(&e);
        return 1;
    }
    let (out, ctl) = match parse_args(&args) {
        Ok(paths) => paths,
        Err(e) => {
            say(&e);
            return 1;
        }
    };
    *control::state() = Some(control::State {
        profile: Profile::default(),
        frozen: false,
        out,
    });
    if let Err(e) = control::listen(&ctl) {
        say(&format!("cannot listen on {ctl}: {e}"));
        return 1;
    }
    // SAFETY: the callbacks are plain functions living as long as the plugin.
    unsafe {
        qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
        qemu_plugin_register_atexit_cb(id, on_exit, std::ptr::null_mut());
    }
    0
}
