//! Tab completion: which word ends at the cursor ([`current_word`]: a
//! command name, or a path), and what Tab does with it ([`complete`]).
//!
//! A word is a command name when it starts a command: first on the line or
//! after `|`, `;`, `&&`, `||`, or right after the `linux` prefix, and has no
//! `/`. Any other word is a path, the word after `cd` a directory. A unique
//! match completes, followed by `/` for a directory or a space otherwise;
//! several complete to their longest common prefix and are listed on the
//! second Tab in a row; no match, or several with nothing more in common on
//! the first Tab, rings the bell. Inserted text is quoted to fit where it
//! goes (a backslash before special characters, or inside open quotes).

use alloc::string::String;
use alloc::vec::Vec;

use crate::editor::Editor;
use crate::path;

/// What kind of word is being completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WordKind {
    Command,
    Path,
    /// The argument of `cd`: a path to a directory.
    Directory,
}

/// The quote open at the cursor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quote {
    None,
    Single,
    Double,
}

/// The word that ends at the cursor, with its quotes and escapes removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrentWord {
    pub kind: WordKind,
    pub text: String,
    pub quote: Quote,
}

/// What Tab does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Completion {
    /// Insert this at the cursor.
    Insert(String),
    /// Show these candidates (directories end with `/`).
    List(Vec<String>),
    /// Nothing to do: ring the bell.
    Bell,
}

/// Scans the line before the cursor word by word.
struct Scan {
    word: CurrentWord,
    started: bool,
    digits_only: bool,
    escape: bool,
    expect_command: bool,
    after_redirect: bool,
    /// The command of the current segment was `cd`.
    in_cd: bool,
}

/// The word ending at the end of `before`, or `None` inside a comment.
pub fn current_word(before: &str) -> Option<CurrentWord> {
    let mut s = Scan {
        word: CurrentWord {
            kind: WordKind::Command,
            text: String::new(),
            quote: Quote::None,
        },
        started: false,
        digits_only: true,
        escape: false,
        expect_command: true,
        after_redirect: false,
        in_cd: false,
    };
    for c in before.chars() {
        if !s.step(c) {
            return None;
        }
    }
    s.word.kind = if s.after_redirect {
        WordKind::Path
    } else if s.expect_command && !s.word.text.contains('/') {
        WordKind::Command
    } else if s.in_cd {
        WordKind::Directory
    } else {
        WordKind::Path
    };
    Some(s.word)
}

impl Scan {
    /// Takes one character; false when a comment starts.
    fn step(&mut self, c: char) -> bool {
        match (self.word.quote, c) {
            (Quote::Single, '\'') | (Quote::Double, '"') if !self.escape => {
                self.word.quote = Quote::None
            }
            (Quote::Single, c) => self.word.text.push(c),
            (Quote::Double, c) if self.escape => {
                if !matches!(c, '"' | '\\' | '$' | '`') {
                    self.word.text.push('\\');
                }
                self.word.text.push(c);
                self.escape = false;
            }
            (Quote::Double, '\\') => self.escape = true,
            (Quote::Double, c) => self.word.text.push(c),
            (Quote::None, c) if self.escape => {
                self.push(c);
                self.escape = false;
            }
            (Quote::None, c) => return self.unquoted(c),
        }
        true
    }

    fn unquoted(&mut self, c: char) -> bool {
        match c {
            '#' if !self.started => return false,
            '\\' => {
                self.escape = true;
                self.started = true;
                self.digits_only = false;
            }
            '\'' => self.open(Quote::Single),
            '"' => self.open(Quote::Double),
            ' ' | '\t' | '\r' | '\n' => self.end_word(),
            '|' | ';' | '&' | '(' | ')' => {
                self.end_word();
                self.expect_command = true;
                self.after_redirect = false;
                self.in_cd = false;
            }
            '<' | '>' => {
                if self.started && self.digits_only {
                    self.reset_word(); // `2>`: a descriptor, not a word
                } else {
                    self.end_word();
                }
                self.after_redirect = true;
            }
            c => self.push(c),
        }
        true
    }

    fn open(&mut self, quote: Quote) {
        self.word.quote = quote;
        self.started = true;
        self.digits_only = false;
    }

    fn push(&mut self, c: char) {
        self.word.text.push(c);
        self.started = true;
        self.digits_only &= c.is_ascii_digit();
    }

    fn end_word(&mut self) {
        if !self.started {
            return;
        }
        if self.after_redirect {
            self.after_redirect = false;
        } else if self.expect_command && self.word.text != "linux" {
            self.expect_command = false;
            self.in_cd = self.word.text == "cd";
        }
        self.reset_word();
    }

    fn reset_word(&mut self) {
        self.word.text.clear();
        self.started = false;
        self.digits_only = true;
    }
}

impl Completion {
    /// Does it on the editor's line and screen.
    pub fn apply(self, editor: &mut Editor) {
        match self {
            Completion::Insert(text) => {
                editor.insert(&text);
            }
            Completion::List(items) => editor.show_list(&items),
            Completion::Bell => editor.bell(),
        }
    }
}

/// A directory entry: name and whether it is a directory.
pub type Entry = (String, bool);

/// What Tab does at the end of `before` (the line up to the cursor);
/// `repeated` is true for the second Tab in a row. Command names come from
/// `commands`; paths are resolved against `cwd` and listed with
/// `list_dir(absolute native path)`, whose failure rings the bell.
pub fn complete<E>(
    before: &str,
    repeated: bool,
    cwd: &str,
    commands: &[&str],
    list_dir: &mut dyn FnMut(&str) -> Result<Vec<Entry>, E>,
) -> Completion {
    let Some(word) = current_word(before) else {
        return Completion::Bell;
    };
    let (prefix, candidates) = match word.kind {
        WordKind::Command => {
            let names = commands
                .iter()
                .map(|name| (String::from(*name), false))
                .collect();
            (word.text.as_str(), names)
        }
        WordKind::Path | WordKind::Directory => {
            let (dir, prefix) = match word.text.rfind('/') {
                Some(i) => (path::resolve(cwd, &word.text[..=i]), &word.text[i + 1..]),
                None => (path::resolve(cwd, "."), word.text.as_str()),
            };
            let Ok(entries) = list_dir(&dir) else {
                return Completion::Bell;
            };
            (prefix, entries)
        }
    };
    let mut matches = matching(candidates, prefix, word.kind);
    match matches.len() {
        0 => Completion::Bell,
        1 => {
            let (name, is_dir) = matches.remove(0);
            Completion::Insert(finish(&name[prefix.len()..], is_dir, word.quote))
        }
        _ => several(&matches, prefix, repeated, word.quote),
    }
}

/// The candidates that start with `prefix`, sorted, without duplicates,
/// `.` and `..`, hidden names unless `prefix` starts with `.`, and files
/// when completing a directory.
fn matching(candidates: Vec<Entry>, prefix: &str, kind: WordKind) -> Vec<Entry> {
    let mut matches: Vec<Entry> = candidates
        .into_iter()
        .filter(|(name, _)| name.starts_with(prefix) && name != "." && name != "..")
        .filter(|(name, _)| prefix.starts_with('.') || !name.starts_with('.'))
        .filter(|(_, is_dir)| kind != WordKind::Directory || *is_dir)
        .collect();
    matches.sort();
    matches.dedup_by(|a, b| a.0 == b.0);
    matches
}

/// Several matches: their common prefix, or on a repeated Tab the list.
fn several(matches: &[Entry], prefix: &str, repeated: bool, quote: Quote) -> Completion {
    let common = common_prefix(matches.iter().map(|(name, _)| name.as_str()));
    if common.len() > prefix.len() {
        return Completion::Insert(quoted(&common[prefix.len()..], quote));
    }
    if !repeated {
        return Completion::Bell;
    }
    let list = matches
        .iter()
        .map(|(name, is_dir)| {
            if *is_dir {
                alloc::format!("{name}/")
            } else {
                name.clone()
            }
        })
        .collect();
    Completion::List(list)
}

/// The longest common prefix, on character boundaries.
fn common_prefix<'a>(mut names: impl Iterator<Item = &'a str>) -> &'a str {
    let Some(first) = names.next() else {
        return "";
    };
    let mut len = first.len();
    for name in names {
        len = first[..len]
            .char_indices()
            .zip(name.chars())
            .find(|((_, a), b)| a != b)
            .map_or(len.min(name.len()), |((i, _), _)| i);
    }
    &first[..len]
}

/// The rest of a unique match, quoted, then `/` for a directory or the
/// closing quote and a space for anything else.
fn finish(rest: &str, is_dir: bool, quote: Quote) -> String {
    let mut text = quoted(rest, quote);
    if is_dir {
        text.push('/');
        return text;
    }
    match quote {
        Quote::None => {}
        Quote::Single => text.push('\''),
        Quote::Double => text.push('"'),
    }
    text.push(' ');
    text
}

/// `text` written so the parser reads it back inside `quote`.
fn quoted(text: &str, quote: Quote) -> String {
    let mut out = String::new();
    for c in text.chars() {
        match (quote, c) {
            (
                Quote::None,
                ' ' | '\t' | '\'' | '"' | '\\' | '$' | '`' | '|' | '&' | ';' | '<' | '>',
            )
            | (Quote::None, '(' | ')' | '#')
            | (Quote::Double, '"' | '\\' | '$' | '`') => {
                out.push('\\');
                out.push(c);
            }
            (Quote::Single, '\'') => out.push_str("'\\''"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    const COMMANDS: &[&str] = &[
        "cat", "cd", "cp", "echo", "ls", "linux", "pwd", "printf", "cat",
    ];

    /// A small native file system.
    fn list_dir(dir: &str) -> Result<Vec<Entry>, ()> {
        let entries: &[(&str, bool)] = match dir {
            "/" => &[
                ("www", true),
                ("etc", true),
                ("hello.txt", false),
                (".hidden", false),
            ],
            "/www" => &[
                ("index.html", false),
                ("img", true),
                ("index.htm", false),
                ("my file's \"name\"", false),
                ("日本語.txt", false),
                ("日本.txt", false),
            ],
            "/www/img" => &[("a.png", false), ("b.png", false)],
            "/etc" => &[
                ("config", false),
                ("conf.d", true),
                (".", true),
                ("..", true),
            ],
            _ => return Err(()),
        };
        Ok(entries.iter().map(|(n, d)| (n.to_string(), *d)).collect())
    }

    fn tab(before: &str, repeated: bool) -> Completion {
        complete(before, repeated, "/", COMMANDS, &mut list_dir)
    }

    fn tab_in(cwd: &str, before: &str) -> Completion {
        complete(before, false, cwd, COMMANDS, &mut list_dir)
    }

    fn insert(s: &str) -> Completion {
        Completion::Insert(s.to_string())
    }

    fn list(items: &[&str]) -> Completion {
        Completion::List(items.iter().map(|s| s.to_string()).collect())
    }

    fn kind(before: &str) -> WordKind {
        current_word(before).unwrap().kind
    }

    #[test]
    fn command_position() {
        assert_eq!(kind(""), WordKind::Command);
        assert_eq!(kind("ec"), WordKind::Command);
        assert_eq!(kind("  ec"), WordKind::Command);
        assert_eq!(kind("echo a | w"), WordKind::Command);
        assert_eq!(kind("a;b"), WordKind::Command);
        assert_eq!(kind("a && "), WordKind::Command);
        assert_eq!(kind("a||b"), WordKind::Command);
        assert_eq!(kind("linux "), WordKind::Command);
        assert_eq!(kind("linux gr"), WordKind::Command);
    }

    #[test]
    fn path_position() {
        assert_eq!(kind("cat "), WordKind::Path);
        assert_eq!(kind("cat a b"), WordKind::Path);
        assert_eq!(kind("./scr"), WordKind::Path);
        assert_eq!(kind("/bin/l"), WordKind::Path);
        assert_eq!(kind("echo > "), WordKind::Path);
        assert_eq!(kind("> out ec"), WordKind::Command);
        assert_eq!(kind("sort 2>"), WordKind::Path);
        assert_eq!(kind("sort <in x"), WordKind::Path);
        assert_eq!(kind("linux grep x "), WordKind::Path);
        assert_eq!(kind("cd "), WordKind::Directory);
        assert_eq!(kind("cd /w"), WordKind::Directory);
        assert_eq!(kind("cd /w; cat "), WordKind::Path);
    }

    #[test]
    fn words_are_unquoted() {
        let w = current_word("cat 'my fi").unwrap();
        assert_eq!((w.text.as_str(), w.quote), ("my fi", Quote::Single));
        let w = current_word(r#"cat "a\"b\$c\n"#).unwrap();
        assert_eq!((w.text.as_str(), w.quote), ("a\"b$c\\n", Quote::Double));
        let w = current_word(r"cat my\ f'il'e").unwrap();
        assert_eq!((w.text.as_str(), w.quote), ("my file", Quote::None));
        let w = current_word("echo '|;' \"a b\" x").unwrap();
        assert_eq!((w.text.as_str(), w.kind), ("x", WordKind::Path));
    }

    #[test]
    fn nothing_to_complete_in_a_comment() {
        assert_eq!(current_word("echo # co"), None);
        assert_eq!(tab("ls # w", false), Completion::Bell);
        assert_eq!(kind("echo a#b"), WordKind::Path);
    }

    #[test]
    fn unique_command_gets_a_space() {
        assert_eq!(tab("ec", false), insert("ho "));
        assert_eq!(tab("ls | pw", false), insert("d "));
        assert_eq!(tab("echo", false), insert(" "));
    }

    #[test]
    fn several_commands_complete_to_their_common_prefix_then_list() {
        assert_eq!(tab("pr", false), insert("intf "));
        assert_eq!(tab("p", false), Completion::Bell);
        assert_eq!(tab("p", true), list(&["printf", "pwd"]));
        assert_eq!(tab("c", false), Completion::Bell);
        assert_eq!(tab("c", true), list(&["cat", "cd", "cp"]));
        assert_eq!(tab("l", false), Completion::Bell);
    }

    #[test]
    fn no_match_rings_the_bell() {
        assert_eq!(tab("zz", false), Completion::Bell);
        assert_eq!(tab("zz", true), Completion::Bell);
        assert_eq!(tab("cat /nope/x", false), Completion::Bell);
        assert_eq!(tab("cat /www/zz", true), Completion::Bell);
    }

    #[test]
    fn paths_complete_in_the_current_directory() {
        assert_eq!(tab("cat he", false), insert("llo.txt "));
        assert_eq!(tab("cd w", false), insert("ww/"));
        assert_eq!(tab_in("/www", "cat i"), Completion::Bell);
        assert_eq!(tab_in("/www", "cat im"), insert("g/"));
        assert_eq!(tab_in("/www", "cat ind"), insert("ex.htm"));
        assert_eq!(tab_in("/www", "cat img/b"), insert(".png "));
        assert_eq!(tab_in("/www/img", "cat ../../e"), insert("tc/"));
    }

    #[test]
    fn absolute_and_home_paths() {
        assert_eq!(tab_in("/www", "cat /he"), insert("llo.txt "));
        assert_eq!(tab_in("/www", "cat /www/img/a"), insert(".png "));
        assert_eq!(tab_in("/www", "cat ~/he"), insert("llo.txt "));
        assert_eq!(tab_in("/www", "cat //www//img/a"), insert(".png "));
    }

    #[test]
    fn listing_marks_directories() {
        assert_eq!(
            tab_in_repeated("/", "ls "),
            list(&["etc/", "hello.txt", "www/"])
        );
        assert_eq!(
            tab_in_repeated("/www", "cat i"),
            list(&["img/", "index.htm", "index.html"])
        );
    }

    fn tab_in_repeated(cwd: &str, before: &str) -> Completion {
        complete(before, true, cwd, COMMANDS, &mut list_dir)
    }

    #[test]
    fn hidden_dot_and_dotdot() {
        assert_eq!(tab_in_repeated("/", "ls ."), insert("hidden "));
        assert_eq!(tab_in_repeated("/etc", "ls co"), insert("nf"));
        assert_eq!(tab_in_repeated("/etc", "ls "), insert("conf"));
        assert_eq!(
            tab_in_repeated("/etc", "ls conf"),
            list(&["conf.d/", "config"])
        );
    }

    #[test]
    fn cd_completes_directories_only() {
        assert_eq!(tab_in("/etc", "cd co"), insert("nf.d/"));
        assert_eq!(tab_in("/", "cd h"), Completion::Bell);
    }

    #[test]
    fn redirect_targets_are_paths() {
        assert_eq!(tab("echo hi > he", false), insert("llo.txt "));
        assert_eq!(tab("sort 2>>he", false), insert("llo.txt "));
    }

    #[test]
    fn special_characters_are_quoted() {
        assert_eq!(
            tab_in("/www", "cat my"),
            insert("\\ file\\'s\\ \\\"name\\\" ")
        );
        assert_eq!(tab_in("/www", "cat 'my"), insert(" file'\\''s \"name\"' "));
        assert_eq!(
            tab_in("/www", "cat \"my"),
            insert(" file's \\\"name\\\"\" ")
        );
    }

    #[test]
    fn multibyte_names_share_prefixes_by_character() {
        assert_eq!(tab_in("/www", "cat 日"), insert("本"));
        assert_eq!(tab_in("/www", "cat 日本語"), insert(".txt "));
    }

    #[test]
    fn common_prefixes() {
        assert_eq!(common_prefix(["abc", "abd", "ab"].into_iter()), "ab");
        assert_eq!(common_prefix(["日本語", "日本"].into_iter()), "日本");
        assert_eq!(common_prefix(["é", "e"].into_iter()), "");
        assert_eq!(common_prefix(["x"].into_iter()), "x");
        assert_eq!(common_prefix([].into_iter()), "");
    }

    #[test]
    fn completed_lines_parse_back_to_the_names() {
        for (before, name) in [
            ("cat my", "my file's \"name\""),
            ("cat 'my", "my file's \"name\""),
            ("cat \"my", "my file's \"name\""),
        ] {
            let Completion::Insert(text) = tab_in("/www", before) else {
                panic!("{before}")
            };
            let line = alloc::format!("{before}{text}");
            let list = crate::parse::parse(&line).unwrap();
            let words = list.items[0].1[0].expand(&|_| None).unwrap().words;
            assert_eq!(words, vec!["cat".to_string(), name.to_string()], "{line}");
        }
    }

    #[test]
    fn tab_in_the_editor() {
        let mut ed = Editor::new("$ ");
        let run = |ed: &mut Editor, bytes: &[u8]| {
            for &b in bytes {
                if let crate::editor::Event::Complete { before, repeated } = ed.feed(b) {
                    complete(&before, repeated, "/www", COMMANDS, &mut list_dir).apply(ed);
                }
            }
        };
        run(&mut ed, b"cat im\tb\t");
        assert_eq!(ed.line(), "cat img/b.png ");
        ed.take_output();
        run(&mut ed, b"\x15cat i\t\t");
        let out = String::from_utf8(ed.take_output()).unwrap();
        assert!(
            out.contains("\r\nimg/  index.htm  index.html\r\n$ cat i"),
            "{out:?}"
        );
        run(&mut ed, b"ndex.html\x1b[D\x1b[D\x1b[D\x1b[D\x1b[D\x7f\t");
        // Only the text before the cursor counts; the rest stays after it.
        assert_eq!((ed.line(), ed.cursor()), ("cat index.htm.html", 13));
    }

    #[test]
    fn hostile_lines_do_not_panic() {
        let long = "a | ".repeat(100_000) + "'unterminated \\";
        assert_eq!(tab(&long, true), Completion::Bell);
        for before in ["\\", "'", "\"", "\"\\", ">", "2>&", "|||", "\u{0}"] {
            let _ = tab(before, true);
        }
    }
}
