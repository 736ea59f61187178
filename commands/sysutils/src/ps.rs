//! `ps`: the running profile's components as a table.

use alloc::format;
use alloc::string::String;
use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

use starina::abi::ComponentState;
use starina::abi::ComponentStatus;
use starina::command::CommandError;

use crate::text;
use crate::Env;
use crate::Outcome;

pub fn run(env: &mut Env) -> Outcome {
    crate::no_args(env)?;
    let components = env
        .monitor
        .components()
        .map_err(|e| CommandError::new(format!("cannot read the components: {e}")))?;
    env.stdout.print(&render(&components))?;
    Ok(0)
}

fn state(s: ComponentState) -> &'static str {
    match s {
        ComponentState::Running => "running",
        ComponentState::Stopped => "stopped",
        ComponentState::NotStarted => "not-started",
    }
}

/// The table `ps` prints: a header, then one row per component.
pub fn render(components: &[ComponentStatus]) -> String {
    let header = ["NAME", "KIND", "STATE", "INSTANCE", "RESTARTS", "MEMORY"];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for c in components {
        rows.push(vec![
            c.name.to_string(),
            c.kind.to_string(),
            state(c.state).to_string(),
            c.instance.to_string(),
            format!("{}/{}", c.restarts, c.max_restarts),
            format!(
                "{} / {}",
                text::size(c.memory_used),
                text::size(c.memory_limit)
            ),
        ]);
    }
    text::table(&rows, &[3, 4])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_per_component() {
        let echo = ComponentStatus {
            name: "echo",
            kind: "server",
            state: ComponentState::Running,
            instance: 2,
            restarts: 1,
            max_restarts: 3,
            memory_used: 100 * 1024,
            memory_limit: 64 << 20,
        };
        let shown = render(&[echo]);
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("NAME"), "{shown}");
        let cells: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            cells,
            ["echo", "server", "running", "2", "1/3", "100", "KiB", "/", "64.0", "MiB"]
        );
    }
}
