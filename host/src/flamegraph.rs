//! A flame graph as a standalone SVG, from folded stacks (Brendan Gregg's
//! format: `root;caller;callee count` per line). Each function on a stack
//! is a rectangle as wide as its share of the count, its callers below
//! it; hovering one shows its name and count (an SVG `<title>`), and the
//! names that fit are written in the boxes. No script: any viewer shows it.

use std::collections::BTreeMap;
use std::fmt::Write;

const WIDTH: f64 = 1200.0;
const ROW: f64 = 16.0;
const TOP: f64 = 32.0;
const FONT_PX: f64 = 11.0;
/// The average width of a character at FONT_PX (monospace is 0.6 em).
const CHAR_PX: f64 = FONT_PX * 0.6;
/// Rectangles narrower than this are left out (they would not show).
const MIN_PX: f64 = 0.3;

/// The stacks merged into a tree: each node a function under its caller.
#[derive(Default)]
struct Tree {
    count: u64,
    children: BTreeMap<String, Tree>,
}

impl Tree {
    fn add(&mut self, stack: &[&str], count: u64) {
        self.count += count;
        if let Some((first, rest)) = stack.split_first() {
            (self.children.entry(first.to_string()).or_default()).add(rest, count);
        }
    }

    fn depth(&self) -> usize {
        self.children
            .values()
            .map(|c| 1 + c.depth())
            .max()
            .unwrap_or(0)
    }
}

/// `text` with XML's special characters escaped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// A warm colour chosen by the name, so a function keeps its colour.
fn colour(name: &str) -> String {
    let h = name
        .bytes()
        .fold(2166136261u32, |h, b| (h ^ b as u32).wrapping_mul(16777619));
    let (r, g, b) = (205 + h % 50, 80 + (h >> 8) % 130, 40 + (h >> 16) % 50);
    format!("rgb({r},{g},{b})")
}

/// As much of `name` as fits in `px` (with `..` when cut), or nothing.
fn fitting(name: &str, px: f64) -> Option<String> {
    let room = ((px - 6.0) / CHAR_PX).floor();
    if room < 3.0 {
        return None;
    }
    let room = room as usize;
    let chars: Vec<char> = name.chars().collect();
    if chars.len() <= room {
        return Some(name.to_string());
    }
    Some(chars[..room - 2].iter().collect::<String>() + "..")
}

struct Canvas {
    svg: String,
    /// Pixels per count.
    scale: f64,
    /// The y of the bottom row (the root).
    bottom: f64,
    total: u64,
    unit: String,
}

impl Canvas {
    fn frame(&mut self, name: &str, count: u64, x: f64, depth: usize) {
        let w = count as f64 * self.scale;
        let y = self.bottom - depth as f64 * ROW;
        let pct = 100.0 * count as f64 / self.total.max(1) as f64;
        let title = format!("{name} ({count} {}, {pct:.2}%)", self.unit);
        let _ = write!(
            self.svg,
            "<g><title>{}</title><rect x=\"{x:.2}\" y=\"{y:.1}\" width=\"{w:.2}\" height=\"{}\" fill=\"{}\" rx=\"2\"/>",
            escape(&title),
            ROW - 1.0,
            colour(name)
        );
        if let Some(label) = fitting(name, w) {
            let _ = write!(
                self.svg,
                "<text x=\"{:.2}\" y=\"{:.1}\">{}</text>",
                x + 3.0,
                y + ROW - 4.5,
                escape(&label)
            );
        }
        self.svg.push_str("</g>\n");
    }

    fn tree(&mut self, name: &str, node: &Tree, x: f64, depth: usize) {
        if node.count as f64 * self.scale < MIN_PX {
            return;
        }
        self.frame(name, node.count, x, depth);
        let mut child_x = x;
        for (child_name, child) in &node.children {
            self.tree(child_name, child, child_x, depth + 1);
            child_x += child.count as f64 * self.scale;
        }
    }
}

/// The SVG for `stacks` (`(frames root first, count)`), titled `title`;
/// `unit` names what is counted ("instructions").
pub fn svg(title: &str, unit: &str, stacks: &[(Vec<&str>, u64)]) -> String {
    let mut root = Tree::default();
    for (frames, count) in stacks {
        root.add(frames, *count);
    }
    let rows = root.depth() + 1;
    let height = TOP + rows as f64 * ROW + 8.0;
    let mut canvas = Canvas {
        svg: String::new(),
        scale: (WIDTH - 20.0) / root.count.max(1) as f64,
        bottom: TOP + (rows - 1) as f64 * ROW,
        total: root.count,
        unit: unit.to_string(),
    };
    let _ = write!(
        canvas.svg,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         viewBox=\"0 0 {WIDTH} {height}\" font-family=\"monospace\" font-size=\"{FONT_PX}\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"rgb(250,250,240)\"/>\n\
         <text x=\"{}\" y=\"20\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n",
        WIDTH / 2.0,
        escape(title)
    );
    canvas.tree("all", &root, 10.0, 0);
    canvas.svg.push_str("</svg>\n");
    canvas.svg
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `(x, width, title)` of every frame drawn.
    fn frames(svg: &str) -> Vec<(f64, f64, String)> {
        svg.split("<g><title>")
            .skip(1)
            .map(|g| {
                let title = g[..g.find("</title>").unwrap()].to_string();
                let attr = |name: &str| -> f64 {
                    let at = g.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
                    g[at..at + g[at..].find('"').unwrap()].parse().unwrap()
                };
                (attr("x"), attr("width"), title)
            })
            .collect()
    }

    #[test]
    fn widths_follow_the_counts_and_callees_sit_on_their_callers() {
        let stacks = vec![
            (vec!["main", "send"], 30),
            (vec!["main", "recv"], 10),
            (vec!["main"], 40),
            (vec!["idle"], 20),
        ];
        let svg = svg("t", "instructions", &stacks);
        let f = frames(&svg);
        let width = |name: &str| {
            f.iter()
                .find(|(_, _, t)| t.starts_with(&format!("{name} (")))
                .unwrap_or_else(|| panic!("no {name} in {svg}"))
                .1
        };
        let all = width("all");
        assert!((all - 1180.0).abs() < 0.01, "{all}");
        assert!((width("main") - all * 0.8).abs() < 0.01);
        assert!((width("send") - all * 0.3).abs() < 0.01);
        assert!((width("idle") - all * 0.2).abs() < 0.01);
        assert!(svg.contains("<title>send (30 instructions, 30.00%)</title>"));
        // Callees are one row above their caller.
        let y = |name: &str| {
            let at = svg.find(&format!("<title>{name} (")).unwrap();
            let at = at + svg[at..].find(" y=\"").unwrap() + 4;
            svg[at..at + svg[at..].find('"').unwrap()]
                .parse::<f64>()
                .unwrap()
        };
        assert_eq!(y("main") - y("send"), ROW);
        assert_eq!(y("all") - y("main"), ROW);
    }

    #[test]
    fn names_are_escaped_and_the_document_is_balanced() {
        let stacks = vec![(vec!["<T as core::ops::Fn<&'a str>>::call"], 5)];
        let svg = svg("a & b", "instructions", &stacks);
        assert!(svg.contains("&lt;T as core::ops::Fn&lt;&amp;&apos;a str&gt;&gt;::call"));
        assert!(svg.contains(">a &amp; b</text>"));
        assert_eq!(svg.matches("<g>").count(), svg.matches("</g>").count());
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(!svg.contains("<script"));
    }

    #[test]
    fn long_names_are_cut_to_their_box_and_tiny_frames_left_out() {
        assert_eq!(fitting("abcdef", 100.0).as_deref(), Some("abcdef"));
        assert_eq!(
            fitting("abcdefghijklmnop", 6.5 + 6.0 * CHAR_PX).as_deref(),
            Some("abcd..")
        );
        assert_eq!(fitting("abcdef", 10.0), None);
        let stacks = vec![(vec!["big"], 1_000_000), (vec!["tiny"], 1)];
        let svg = svg("t", "instructions", &stacks);
        assert!(svg.contains("<title>big ("));
        assert!(!svg.contains("<title>tiny ("));
    }
}
