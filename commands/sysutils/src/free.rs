//! `free`: the machine's memory figures.

use alloc::format;
use alloc::string::String;
use alloc::string::ToString;
use alloc::vec;

use starina::abi::MemoryStats;
use starina::command::CommandError;

use crate::text;
use crate::Env;
use crate::Outcome;

const PAGE_SIZE: usize = 4096;

pub fn run(env: &mut Env) -> Outcome {
    crate::no_args(env)?;
    let stats = env
        .monitor
        .memory()
        .map_err(|e| CommandError::new(format!("cannot read the memory figures: {e}")))?;
    env.stdout.print(&render(&stats))?;
    Ok(0)
}

/// Total, used and free memory in bytes and pages, then the kernel's own.
pub fn render(m: &MemoryStats) -> String {
    let used = m.pages_total.saturating_sub(m.pages_free);
    let pages = [m.pages_total, used, m.pages_free];
    let bytes = pages.map(|p| text::size(p.saturating_mul(PAGE_SIZE)));
    let rows = vec![
        vec![
            String::new(),
            "total".to_string(),
            "used".to_string(),
            "free".to_string(),
        ],
        vec![
            "memory".to_string(),
            bytes[0].clone(),
            bytes[1].clone(),
            bytes[2].clone(),
        ],
        vec![
            "pages".to_string(),
            pages[0].to_string(),
            pages[1].to_string(),
            pages[2].to_string(),
        ],
    ];
    let mut out = text::table(&rows, &[1, 2, 3]);
    out.push_str(&format!(
        "kernel heap in use: {}\nDMA pages: {}\npages the kernel keeps: {}\n",
        text::size(m.heap_in_use),
        m.dma_pages,
        m.pages_kept
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn used_is_total_minus_free() {
        let m = MemoryStats {
            heap_in_use: 3 << 20,
            pages_free: 1000,
            pages_total: 4096,
            dma_pages: 16,
            pages_kept: 20,
        };
        let shown = render(&m);
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["total", "used", "free"]
        );
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            ["memory", "16.0", "MiB", "12.1", "MiB", "3.9", "MiB"]
        );
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>(),
            ["pages", "4096", "3096", "1000"]
        );
        assert!(shown.contains("kernel heap in use: 3.0 MiB"), "{shown}");
    }
}
