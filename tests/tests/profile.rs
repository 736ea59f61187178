//! `scripts/starina profile` end to end: the IPC benchmark's instructions,
//! counted by the QEMU plugin, land in the kernel functions a channel round
//! trip runs through, and the table, folded stacks and flame graph agree.
//! Slow (boots QEMU): run by `make test`.

use std::path::Path;

use starina_tests::*;

/// The numbers of a table row: self, self%, inclusive, incl%, calls; and
/// the function's name.
fn row(line: &str) -> Option<([f64; 5], &str)> {
    let mut words = line.split_whitespace();
    let mut numbers = [0.0; 5];
    for n in &mut numbers {
        *n = words.next()?.parse().ok()?;
    }
    let at = line.find(words.next()?)?;
    Some((numbers, &line[at..]))
}

/// The rows of the table's first section (by self).
fn by_self(table: &str) -> Vec<([f64; 5], &str)> {
    table
        .lines()
        .skip_while(|l| !l.starts_with("by self"))
        .skip(2)
        .map_while(row)
        .collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
#[ignore = "boots the kernel under QEMU: run by make test"]
fn profile_counts_the_instructions_of_ipc_and_draws_them() {
    let image = kernel();
    let out = std::env::temp_dir().join(format!("starina-profile-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let run = starina_with_env(
        &[
            "profile",
            "--kernel",
            image.to_str().expect("a UTF-8 path"),
            "--no-build",
            "--icount",
            "--skip",
            "0.3",
            "--seconds",
            "2",
            "--top",
            "10",
            "--out",
            out.to_str().expect("a UTF-8 path"),
        ],
        &[],
    );
    run.assert_code(0);

    // The printed table: the round trip's kernel path is where the
    // instructions go.
    let top = by_self(&run.stdout);
    assert_eq!(top.len(), 10, "{}", run.transcript());
    for function in ["poll_wait", "channel_send"] {
        assert!(
            top.iter().any(|(_, name)| name.contains(function)),
            "{function} is not among the top 10\n{}",
            run.transcript()
        );
    }

    // The table file lists every function; self adds up to the total.
    let table = read(&out.join("bench-functions.txt"));
    let total: u64 = table
        .lines()
        .next()
        .and_then(|l| {
            l.strip_suffix(" instructions")?
                .rsplit(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no total in\n{table}"));
    assert!(total > 10_000_000, "only {total} instructions counted");
    // The shadow call stack saw each call return.
    let stack_line = table.lines().nth(1).unwrap_or_default();
    let count_of = |what: &str| -> f64 {
        let words: Vec<&str> = stack_line.split([' ', ',', ';', '(', ')']).collect();
        let at = words.iter().position(|w| *w == what).expect(what);
        words[at - 1].parse().expect(what)
    };
    let (calls, rets) = (count_of("calls"), count_of("rets"));
    assert!(calls > 10_000.0, "{stack_line}");
    assert!((calls - rets).abs() <= calls / 100.0, "{stack_line}");
    let rows = by_self(&table);
    let own: f64 = rows.iter().map(|(n, _)| n[0]).sum();
    assert_eq!(own as u64, total, "self does not add up\n{table}");
    for (n, name) in &rows {
        assert!(n[2] >= n[0], "{name}: inclusive below self\n{table}");
    }
    // One echo handler call per round trip, each a few thousand
    // instructions all told.
    let (echo, _) = rows
        .iter()
        .find(|(_, name)| name.contains("Echo as starina::mainloop::handler::Handler>::message"))
        .unwrap_or_else(|| panic!("no echo handler in\n{table}"));
    let per_round_trip = total as f64 / echo[4];
    assert!(
        (500.0..20_000.0).contains(&per_round_trip),
        "{per_round_trip} instructions per round trip\n{table}"
    );

    // The folded stacks hold the same instructions.
    let folded = read(&out.join("bench.folded"));
    let folded_total: u64 = folded
        .lines()
        .map(|l| {
            l.rsplit(' ')
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .expect(l)
        })
        .sum();
    assert_eq!(folded_total, total);
    assert!(folded
        .lines()
        .any(|l| l.contains("bench::round_trips;") && l.contains("channel_send")));

    // The flame graph: a complete SVG with a box for the send path (the
    // plain send, or the one call that sends and waits for the reply).
    let svg = read(&out.join("bench.svg"));
    assert!(svg.starts_with("<?xml"), "{svg}");
    assert!(svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<g>").count(), svg.matches("</g>").count());
    assert!(svg.contains(&format!(
        "<title>all ({total} instructions, 100.00%)</title>"
    )));
    assert!(
        svg.contains("::channel_send (") || svg.contains("::channel_send_poll_wait_recv ("),
        "no box for the send path in the flame graph"
    );
    let _ = std::fs::remove_dir_all(&out);
}
