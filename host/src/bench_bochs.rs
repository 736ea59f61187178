//! The hypervisor backends' figures for `starina bench` (`--bochs-only`
//! runs only these): the smallest Linux guest (profile linux_smoke) booted
//! under Bochs through the VMX backend (Intel CPU model) and through SVM
//! (AMD model). Bochs runs one instruction per TSC tick (`ips` in the
//! bochsrc, no real-time sync), so the guest TSC counts instructions, of
//! Starina and Linux together, as `-icount` does under QEMU. Prints:
//!
//! - `linux_boot_instructions_{vmx,svm}` and
//!   `linux_boot_instructions_vmx_over_svm`: from `booting Linux` to the
//!   agent's ready, as in `bench_linux`;
//! - `linux_boot_exits_{vmx,svm}`, `linux_boot_exits_per_s_{vmx,svm}`
//!   (per emulated second) and `linux_boot_exits_by_reason_{vmx,svm}`
//!   (the linux server's count by kind, as it logs it at ready).

use crate::bench::capture;
use crate::bench::Figures;
use crate::bench_linux::boot_instructions;
use crate::bochs::Cpu;
use crate::host::Host;
use crate::markers;
use crate::run::Emulator;
use crate::run::RunOptions;

const PROFILE: &str = "linux_smoke";
const TIMEOUT_S: f64 = 300.0;
/// The linux server's exit summary at the agent's ready.
const EXITS_AT_READY: &str = "vm exits to agent ready: ";

pub fn figures(host: &Host) -> Result<Figures, String> {
    let mut figures = Figures::new();
    let mut counts = Vec::new();
    for (cpu, backend) in [(Cpu::Intel, "vmx"), (Cpu::Amd, "svm")] {
        let boot = boot(host, cpu)?;
        figures.insert(
            format!("linux_boot_instructions_{backend}"),
            boot.instructions.to_string(),
        );
        figures.insert(
            format!("linux_boot_exits_{backend}"),
            boot.exits.to_string(),
        );
        let seconds = boot.instructions as f64 / (boot.tsc_mhz as f64 * 1e6);
        figures.insert(
            format!("linux_boot_exits_per_s_{backend}"),
            format!("{:.0}", boot.exits as f64 / seconds),
        );
        figures.insert(
            format!("linux_boot_exits_by_reason_{backend}"),
            boot.by_reason,
        );
        counts.push(boot.instructions);
    }
    figures.insert(
        "linux_boot_instructions_vmx_over_svm".into(),
        format!("{:.3}", counts[0] as f64 / counts[1] as f64),
    );
    Ok(figures)
}

/// What one Bochs boot of Linux showed.
struct Boot {
    instructions: u64,
    tsc_mhz: u64,
    exits: u64,
    by_reason: String,
}

fn boot(host: &Host, cpu: Cpu) -> Result<Boot, String> {
    let mut opts = RunOptions::new(PROFILE);
    opts.emulator = Emulator::Bochs(cpu);
    // One CPU, as the figure's baseline.
    opts.cpus = 1;
    opts.build = false;
    opts.timeout = Some(TIMEOUT_S);
    opts.until = vec![markers::AGENT_READY.to_string(), EXITS_AT_READY.to_string()];
    let captured = capture(host, &opts);
    if !captured.report.status.is_success() {
        captured.show_failure(&format!("the Bochs boot of {PROFILE} ({cpu:?})"));
        return Err(format!("no Linux boot under Bochs ({cpu:?})"));
    }
    let lines: Vec<&str> = captured.console.lines().collect();
    parse(&lines).ok_or_else(|| format!("Bochs ({cpu:?}): the boot's console lacks a figure"))
}

fn parse(lines: &[&str]) -> Option<Boot> {
    let tsc_mhz = lines.iter().find_map(|l| tsc_mhz(l))?;
    let instructions = boot_instructions(lines, tsc_mhz)?;
    let summary = lines
        .iter()
        .find_map(|l| Some(&l[l.find(EXITS_AT_READY)? + EXITS_AT_READY.len()..]))?;
    let exits = summary.split(' ').next()?.parse().ok()?;
    let by_reason = summary.rsplit("; ").next()?.to_string();
    Some(Boot {
        instructions,
        tsc_mhz,
        exits,
        by_reason,
    })
}

/// `... timer: TSC 200 MHz, ...` -> 200.
fn tsc_mhz(line: &str) -> Option<u64> {
    let rest = &line[line.find("timer: TSC ")? + "timer: TSC ".len()..];
    rest.split(' ').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_boots_figures_from_its_console() {
        let lines = [
            "[   0.006277] INFO  kernel: timer: TSC 200 MHz, LAPIC timer 200 MHz (calibrated with the PIT)",
            "[   0.076417] INFO  kernel: starina: ready (tsc=974775887) profile 'linux_smoke'",
            "[   0.312975] INFO  linux: booting Linux: 256 MiB RAM, kernel 2625 KiB",
            "[   0.744096] INFO  linux: [guest] starina-agent: ready (Linux 6.12.118) tsc=1108160256",
            "[   0.751689] INFO  linux: vm exits to agent ready: 1055 exits, halted 0 ns, 30 interrupts injected; mmio 301 serial 263",
        ];
        let boot = parse(&lines).expect("figures");
        // Booting at 974775887 + (312975000 - 76417000) ns * 0.2 ticks/ns.
        assert_eq!(boot.instructions, 1108160256 - (974775887 + 47311600));
        assert_eq!(boot.exits, 1055);
        assert_eq!(boot.by_reason, "mmio 301 serial 263");
        assert!(parse(&lines[1..]).is_none(), "no TSC rate: no figure");
    }
}
