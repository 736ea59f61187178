//! The command language: words with quotes, escapes and `$` expansion,
//! pipelines, redirections and lists joined by `;`, `&&` and `||`.
//!
//! [`parse`] turns a line into a [`List`] whose words still hold their
//! `$NAME`/`$?` references ([`Word`]); the shell expands each command with
//! [`Command::expand`] just before running it, so `false; echo $?` sees the
//! status of `false`. Expansion never splits a word into several and there
//! is no globbing: `*` is an ordinary character. An unquoted word that
//! expands to nothing is dropped (as in sh); `""` is an empty argument.
//!
//! Both the lexer and the parser are loops over the input, so a line of
//! any length is parsed in linear time without recursion.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::lex::Op;
use crate::lex::RedirOp;
use crate::lex::Token;

/// A piece of a word: literal text or a variable to expand (`?` for `$?`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    Lit(String),
    Var(String),
}

/// A word before expansion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Word {
    pub parts: Vec<Part>,
    /// The word had quotes or literal characters, so it stays an argument
    /// even if it expands to the empty string.
    pub keep_empty: bool,
    /// Byte offset of the word in the line.
    pub pos: usize,
}

/// Where a redirection sends a file descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target<W> {
    /// `< file`
    Read(W),
    /// `> file`
    Write(W),
    /// `>> file`
    Append(W),
    /// `>&N` / `<&N`: a copy of descriptor N.
    Dup(u32),
}

/// `fd` redirected to `target` (`2> file` is fd 2, `> file` fd 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect<W = Word> {
    pub fd: u32,
    pub target: Target<W>,
}

/// One command of a pipeline: its words (name first) and redirections, in
/// the order written. A command may have redirections and no words
/// (`> file` alone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command<W = Word> {
    pub words: Vec<W>,
    pub redirects: Vec<Redirect<W>>,
}

/// Commands joined by `|`, output of each into the next.
pub type Pipeline = Vec<Command>;

/// How a pipeline of a [`List`] depends on the status of what ran before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connector {
    /// First in the list or after `;`: always runs.
    Seq,
    /// After `&&`: runs if the last status is 0.
    And,
    /// After `||`: runs if the last status is not 0.
    Or,
}

impl Connector {
    /// Whether a pipeline with this connector runs, given `$?` so far.
    /// Skipped pipelines leave `$?` alone, which gives sh's left
    /// associativity: `false && a || b` runs `b`.
    pub fn runs_after(self, status: i32) -> bool {
        match self {
            Connector::Seq => true,
            Connector::And => status == 0,
            Connector::Or => status != 0,
        }
    }
}

/// A parsed line: pipelines with the connector before each. Empty for a
/// blank line or a comment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct List {
    pub items: Vec<(Connector, Pipeline)>,
}

/// What is wrong with a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    UnterminatedSingleQuote,
    UnterminatedDoubleQuote,
    /// `${` without `}`, or `${}` / `${1x}`.
    BadSubstitution,
    /// The line ends with a lone `\`.
    TrailingBackslash,
    /// A redirection operator (`<`, `>`, `>>`, `2>`) without a file name.
    MissingRedirectTarget(&'static str),
    /// `>&` / `<&` not followed by a descriptor number.
    BadDupTarget,
    /// A descriptor number too large (`99999999999>`).
    BadFd,
    /// An operator with no command before it (`| a`, `a | | b`, `; a`).
    MissingCommandBefore(&'static str),
    /// An operator with no command after it (`a |`, `a &&`).
    MissingCommandAfter(&'static str),
    /// Shell syntax this shell does not have (background jobs, subshells,
    /// here-documents, command substitution).
    Unsupported(&'static str),
}

/// A syntax error: what, and where (byte offset and 1-based column).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub kind: ErrorKind,
    pub pos: usize,
    pub column: usize,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::UnterminatedSingleQuote => write!(f, "unterminated single quote"),
            ErrorKind::UnterminatedDoubleQuote => write!(f, "unterminated double quote"),
            ErrorKind::BadSubstitution => write!(f, "bad ${{...}} substitution"),
            ErrorKind::TrailingBackslash => write!(f, "the line ends with a backslash"),
            ErrorKind::MissingRedirectTarget(op) => write!(f, "missing file name after '{op}'"),
            ErrorKind::BadDupTarget => write!(f, "'>&' needs a file descriptor number"),
            ErrorKind::BadFd => write!(f, "file descriptor number too large"),
            ErrorKind::MissingCommandBefore(op) => write!(f, "missing command before '{op}'"),
            ErrorKind::MissingCommandAfter(op) => write!(f, "missing command after '{op}'"),
            ErrorKind::Unsupported(what) => write!(f, "{what} not supported"),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "syntax error at column {}: {}", self.column, self.kind)
    }
}

/// An expansion that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExpandError {
    /// A redirection's file name expanded to the empty string.
    EmptyRedirectTarget { pos: usize },
}

impl fmt::Display for ExpandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpandError::EmptyRedirectTarget { .. } => {
                write!(f, "redirection to an empty file name")
            }
        }
    }
}

/// Parses one line.
pub fn parse(line: &str) -> Result<List, ParseError> {
    let tokens = crate::lex::tokens(line).map_err(|(kind, pos)| error(line, kind, pos))?;
    build(tokens).map_err(|(kind, pos)| error(line, kind, pos))
}

fn error(line: &str, kind: ErrorKind, pos: usize) -> ParseError {
    let column = line.get(..pos).map_or(pos, |s| s.chars().count()) + 1;
    ParseError { kind, pos, column }
}

/// The list being built: finished pipelines, the current pipeline and
/// command, and the operator that still needs a command after it.
struct Builder {
    list: List,
    connector: Connector,
    pipeline: Pipeline,
    command: Command,
    pending: Option<(&'static str, usize)>,
}

fn build(tokens: Vec<Token>) -> Result<List, (ErrorKind, usize)> {
    let mut b = Builder {
        list: List::default(),
        connector: Connector::Seq,
        pipeline: Vec::new(),
        command: Command {
            words: Vec::new(),
            redirects: Vec::new(),
        },
        pending: None,
    };
    let mut tokens = tokens.into_iter();
    while let Some(token) = tokens.next() {
        match token {
            Token::Word(word) => {
                b.command.words.push(word);
                b.pending = None;
            }
            Token::Redirect { fd, op, pos } => {
                let target = redirect_target(op, pos, tokens.next())?;
                b.command.redirects.push(Redirect { fd, target });
                b.pending = None;
            }
            Token::Op(op, pos) => b.operator(op, pos)?,
        }
    }
    if let Some((op, pos)) = b.pending {
        return Err((ErrorKind::MissingCommandAfter(op), pos));
    }
    if !b.command.is_empty() {
        b.end_command();
        b.end_pipeline(Connector::Seq);
    }
    Ok(b.list)
}

impl Builder {
    fn operator(&mut self, op: Op, pos: usize) -> Result<(), (ErrorKind, usize)> {
        if self.command.is_empty() {
            return Err(match self.pending {
                Some((prev, prev_pos)) => (ErrorKind::MissingCommandAfter(prev), prev_pos),
                None => (ErrorKind::MissingCommandBefore(op.text()), pos),
            });
        }
        self.end_command();
        match op {
            Op::Pipe => self.pending = Some(("|", pos)),
            Op::Semi => self.end_pipeline(Connector::Seq),
            Op::And => {
                self.end_pipeline(Connector::And);
                self.pending = Some(("&&", pos));
            }
            Op::Or => {
                self.end_pipeline(Connector::Or);
                self.pending = Some(("||", pos));
            }
        }
        Ok(())
    }

    fn end_command(&mut self) {
        let empty = Command {
            words: Vec::new(),
            redirects: Vec::new(),
        };
        self.pipeline
            .push(core::mem::replace(&mut self.command, empty));
    }

    /// Closes the pipeline; `next` is the connector of the one after it.
    fn end_pipeline(&mut self, next: Connector) {
        let pipeline = core::mem::take(&mut self.pipeline);
        let connector = core::mem::replace(&mut self.connector, next);
        self.list.items.push((connector, pipeline));
    }
}

fn redirect_target(
    op: RedirOp,
    pos: usize,
    next: Option<Token>,
) -> Result<Target<Word>, (ErrorKind, usize)> {
    let Some(Token::Word(word)) = next else {
        return Err((ErrorKind::MissingRedirectTarget(op.text()), pos));
    };
    Ok(match op {
        RedirOp::Read => Target::Read(word),
        RedirOp::Write => Target::Write(word),
        RedirOp::Append => Target::Append(word),
        RedirOp::DupRead | RedirOp::DupWrite => {
            Target::Dup(dup_fd(&word).ok_or((ErrorKind::BadDupTarget, word.pos))?)
        }
    })
}

/// The descriptor number of a `>&N` target: literal ASCII digits.
fn dup_fd(word: &Word) -> Option<u32> {
    match word.parts.as_slice() {
        [Part::Lit(text)] if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => {
            text.parse().ok()
        }
        _ => None,
    }
}

impl<W> Command<W> {
    /// No words and no redirections.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty() && self.redirects.is_empty()
    }
}

impl Word {
    /// The word with its variables replaced by `lookup(name)` (unset is
    /// empty; `$?` looks up `"?"`).
    pub fn expand(&self, lookup: &dyn Fn(&str) -> Option<String>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Lit(text) => out.push_str(text),
                Part::Var(name) => out.push_str(&lookup(name).unwrap_or_default()),
            }
        }
        out
    }
}

impl Command<Word> {
    /// The command with every word and file name expanded, ready to run.
    pub fn expand(
        &self,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Command<String>, ExpandError> {
        let mut words = Vec::new();
        for word in &self.words {
            let text = word.expand(lookup);
            if !text.is_empty() || word.keep_empty {
                words.push(text);
            }
        }
        let mut redirects = Vec::new();
        for redirect in &self.redirects {
            let file = |word: &Word| {
                let text = word.expand(lookup);
                if text.is_empty() {
                    Err(ExpandError::EmptyRedirectTarget { pos: word.pos })
                } else {
                    Ok(text)
                }
            };
            let target = match &redirect.target {
                Target::Read(word) => Target::Read(file(word)?),
                Target::Write(word) => Target::Write(file(word)?),
                Target::Append(word) => Target::Append(file(word)?),
                Target::Dup(fd) => Target::Dup(*fd),
            };
            redirects.push(Redirect {
                fd: redirect.fd,
                target,
            });
        }
        Ok(Command { words, redirects })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    fn vars(name: &str) -> Option<String> {
        match name {
            "?" => Some("1".to_string()),
            "HOME" => Some("/home".to_string()),
            "SP" => Some("a b".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    /// The expanded command of a one-command line.
    fn one(line: &str) -> Command<String> {
        let list = parse(line).unwrap();
        assert_eq!(list.items.len(), 1, "{line}");
        assert_eq!(list.items[0].1.len(), 1, "{line}");
        list.items[0].1[0].expand(&vars).unwrap()
    }

    fn words(line: &str) -> Vec<String> {
        one(line).words
    }

    /// Every command's expanded words, per pipeline.
    fn shape(line: &str) -> Vec<(Connector, Vec<Vec<String>>)> {
        let list = parse(line).unwrap();
        list.items
            .iter()
            .map(|(c, p)| {
                (
                    *c,
                    p.iter()
                        .map(|cmd| cmd.expand(&vars).unwrap().words)
                        .collect(),
                )
            })
            .collect()
    }

    fn err(line: &str) -> ParseError {
        parse(line).unwrap_err()
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn plain_words() {
        assert_eq!(words("ls -l  /www"), s(&["ls", "-l", "/www"]));
        assert_eq!(words("  \techo\t hi  "), s(&["echo", "hi"]));
    }

    #[test]
    fn blank_lines_and_comments_are_empty_lists() {
        assert!(parse("").unwrap().items.is_empty());
        assert!(parse("   \t ").unwrap().items.is_empty());
        assert!(parse("# just a comment | ; &&").unwrap().items.is_empty());
    }

    #[test]
    fn comments_only_at_word_start() {
        assert_eq!(words("echo a#b # c d"), s(&["echo", "a#b"]));
        assert_eq!(words("echo '#x' \\#y"), s(&["echo", "#x", "#y"]));
        assert_eq!(shape("a;# b"), vec![(Connector::Seq, vec![s(&["a"])])]);
    }

    #[test]
    fn single_quotes_are_literal() {
        assert_eq!(
            words("echo 'a  b' '$HOME' 'x\\y' \"\"''"),
            s(&["echo", "a  b", "$HOME", "x\\y", ""])
        );
        assert_eq!(words("echo a'b c'd"), s(&["echo", "ab cd"]));
    }

    #[test]
    fn double_quotes_escape_and_expand() {
        assert_eq!(
            words(r#"echo "a \"b\" \\ \$HOME $HOME \n""#),
            s(&["echo", "a \"b\" \\ $HOME /home \\n"])
        );
        assert_eq!(
            words(r#"echo "$?" "${HOME}x" "$SP""#),
            s(&["echo", "1", "/homex", "a b"])
        );
        assert_eq!(words(r#"echo "it's""#), s(&["echo", "it's"]));
    }

    #[test]
    fn backslash_outside_quotes() {
        assert_eq!(
            words(r"echo a\ b \| \; \$HOME \\ \é"),
            s(&["echo", "a b", "|", ";", "$HOME", "\\", "é"])
        );
    }

    #[test]
    fn dollar_expansion() {
        assert_eq!(
            words("echo $? $HOME/x ${HOME}y $HOMEy"),
            s(&["echo", "1", "/home/x", "/homey"])
        );
        assert_eq!(
            words("echo $UNSET. a$ $ $1 $-"),
            s(&["echo", ".", "a$", "$", "$1", "$-"])
        );
    }

    #[test]
    fn expansion_is_not_split() {
        assert_eq!(words("echo $SP"), s(&["echo", "a b"]));
    }

    #[test]
    fn unquoted_empty_expansions_vanish_quoted_stay() {
        assert_eq!(words("echo $EMPTY $UNSET x"), s(&["echo", "x"]));
        assert_eq!(words("echo \"$EMPTY\" ''"), s(&["echo", "", ""]));
    }

    #[test]
    fn variables_are_kept_until_expansion() {
        let list = parse("false; echo $?").unwrap();
        let echo = &list.items[1].1[0];
        assert_eq!(echo.words[1].parts, vec![Part::Var("?".to_string())]);
        let zero = |name: &str| (name == "?").then(|| "0".to_string());
        assert_eq!(echo.expand(&zero).unwrap().words, s(&["echo", "0"]));
    }

    #[test]
    fn pipelines() {
        assert_eq!(
            shape("a x | b|c"),
            vec![(Connector::Seq, vec![s(&["a", "x"]), s(&["b"]), s(&["c"])])]
        );
    }

    #[test]
    fn lists_with_connectors() {
        assert_eq!(
            shape("a; b && c || d | e;"),
            vec![
                (Connector::Seq, vec![s(&["a"])]),
                (Connector::Seq, vec![s(&["b"])]),
                (Connector::And, vec![s(&["c"])]),
                (Connector::Or, vec![s(&["d"]), s(&["e"])]),
            ]
        );
    }

    #[test]
    fn connectors_are_left_associative_like_sh() {
        // Statuses after running each pipeline of `false && a || b`.
        let list = parse("false && a || b").unwrap();
        let mut status = 1; // false ran
        let mut ran = Vec::new();
        for (connector, pipeline) in &list.items[1..] {
            if connector.runs_after(status) {
                ran.push(pipeline[0].expand(&vars).unwrap().words[0].clone());
                status = 0;
            }
        }
        assert_eq!(ran, s(&["b"]));
        assert!(!Connector::Or.runs_after(0));
        assert!(Connector::Seq.runs_after(7));
    }

    #[test]
    fn redirections() {
        let cmd = one("sort < in > out 2>> err");
        assert_eq!(cmd.words, s(&["sort"]));
        assert_eq!(
            cmd.redirects,
            vec![
                Redirect {
                    fd: 0,
                    target: Target::Read("in".to_string())
                },
                Redirect {
                    fd: 1,
                    target: Target::Write("out".to_string())
                },
                Redirect {
                    fd: 2,
                    target: Target::Append("err".to_string())
                },
            ]
        );
    }

    #[test]
    fn redirections_without_spaces_and_anywhere() {
        let cmd = one(">out echo a>>log b 2>&1");
        assert_eq!(cmd.words, s(&["echo", "a", "b"]));
        assert_eq!(
            cmd.redirects,
            vec![
                Redirect {
                    fd: 1,
                    target: Target::Write("out".to_string())
                },
                Redirect {
                    fd: 1,
                    target: Target::Append("log".to_string())
                },
                Redirect {
                    fd: 2,
                    target: Target::Dup(1)
                },
            ]
        );
    }

    #[test]
    fn digits_before_redirect_only_when_unquoted_and_adjacent() {
        assert_eq!(one("echo 2 > f").words, s(&["echo", "2"]));
        assert_eq!(one("echo '2'> f").words, s(&["echo", "2"]));
        assert_eq!(one("echo a2> f").words, s(&["echo", "a2"]));
        assert_eq!(one("cmd 12> f").redirects[0].fd, 12);
        assert_eq!(
            one("cmd <&3").redirects[0],
            Redirect {
                fd: 0,
                target: Target::Dup(3)
            }
        );
    }

    #[test]
    fn redirect_targets_expand() {
        let cmd = one("echo > \"$HOME/a b\"");
        assert_eq!(
            cmd.redirects[0].target,
            Target::Write("/home/a b".to_string())
        );
        let list = parse("echo > $EMPTY").unwrap();
        assert_eq!(
            list.items[0].1[0].expand(&vars),
            Err(ExpandError::EmptyRedirectTarget { pos: 7 })
        );
    }

    #[test]
    fn redirect_only_command_is_allowed() {
        let cmd = one("> out");
        assert!(cmd.words.is_empty());
        assert_eq!(cmd.redirects.len(), 1);
    }

    #[test]
    fn unterminated_quotes_report_the_opening_quote() {
        let e = err("echo 'abc");
        assert_eq!(
            (e.kind, e.pos, e.column),
            (ErrorKind::UnterminatedSingleQuote, 5, 6)
        );
        let e = err("echo é\"abc\\\"");
        assert_eq!(
            (e.kind, e.pos, e.column),
            (ErrorKind::UnterminatedDoubleQuote, 7, 7)
        );
        assert_eq!(
            e.to_string(),
            "syntax error at column 7: unterminated double quote"
        );
    }

    #[test]
    fn missing_redirect_targets() {
        assert_eq!(err("echo >").kind, ErrorKind::MissingRedirectTarget(">"));
        assert_eq!(
            err("echo >> | a").kind,
            ErrorKind::MissingRedirectTarget(">>")
        );
        assert_eq!(err("cat < ; a").kind, ErrorKind::MissingRedirectTarget("<"));
        let e = err("echo 2> > f");
        assert_eq!((e.kind, e.pos), (ErrorKind::MissingRedirectTarget(">"), 5));
        assert_eq!(err("echo >&x").kind, ErrorKind::BadDupTarget);
        assert_eq!(err("echo >&").kind, ErrorKind::MissingRedirectTarget(">&"));
        assert_eq!(err("echo 99999999999> f").kind, ErrorKind::BadFd);
    }

    #[test]
    fn empty_commands_in_pipelines_and_lists() {
        let e = err("a | | b");
        assert_eq!((e.kind, e.pos), (ErrorKind::MissingCommandAfter("|"), 2));
        assert_eq!(err("a |").kind, ErrorKind::MissingCommandAfter("|"));
        assert_eq!(err("a | ;").kind, ErrorKind::MissingCommandAfter("|"));
        assert_eq!(err("a &&").kind, ErrorKind::MissingCommandAfter("&&"));
        assert_eq!(err("a || # c").kind, ErrorKind::MissingCommandAfter("||"));
        assert_eq!(err("| a").kind, ErrorKind::MissingCommandBefore("|"));
        assert_eq!(err("; a").kind, ErrorKind::MissingCommandBefore(";"));
        assert_eq!(err("a;; b").kind, ErrorKind::MissingCommandBefore(";"));
        assert_eq!(err("&& a").kind, ErrorKind::MissingCommandBefore("&&"));
    }

    #[test]
    fn unsupported_syntax_is_named() {
        assert_eq!(
            err("sleep 1 &").kind,
            ErrorKind::Unsupported("background jobs (&)")
        );
        assert_eq!(err("(a)").kind, ErrorKind::Unsupported("subshells ( )"));
        assert_eq!(
            err("cat << EOF").kind,
            ErrorKind::Unsupported("here-documents (<<)")
        );
        assert_eq!(
            err("echo $(ls)").kind,
            ErrorKind::Unsupported("command substitution $(...)")
        );
        assert_eq!(
            err("echo `ls`").kind,
            ErrorKind::Unsupported("command substitution `...`")
        );
        assert_eq!(
            err("echo \"`ls`\"").kind,
            ErrorKind::Unsupported("command substitution `...`")
        );
    }

    #[test]
    fn bad_substitutions() {
        assert_eq!(err("echo ${HOME").kind, ErrorKind::BadSubstitution);
        assert_eq!(err("echo ${}").kind, ErrorKind::BadSubstitution);
        assert_eq!(err("echo ${1x}").kind, ErrorKind::BadSubstitution);
        assert_eq!(err("echo \"${a b}\"").kind, ErrorKind::BadSubstitution);
        assert_eq!(words("echo ${?}"), s(&["echo", "1"]));
    }

    #[test]
    fn trailing_backslash() {
        let e = err("echo a\\");
        assert_eq!((e.kind, e.pos), (ErrorKind::TrailingBackslash, 6));
    }

    #[test]
    fn multibyte_text_is_kept() {
        assert_eq!(
            words("echo héllo 'wörld' \"日本\""),
            s(&["echo", "héllo", "wörld", "日本"])
        );
        assert_eq!(err("日本 |").column, 4);
    }

    #[test]
    fn million_byte_lines_parse_in_linear_time() {
        let long_word = "x".repeat(1_000_000);
        assert_eq!(words(&long_word)[0].len(), 1_000_000);
        let pipes = "a|".repeat(300_000) + "a";
        assert_eq!(parse(&pipes).unwrap().items[0].1.len(), 300_001);
        let lists = "a&&b||".repeat(150_000) + "c";
        assert_eq!(parse(&lists).unwrap().items.len(), 300_001);
        let quotes = "'a'\"b\"\\c$HOME".repeat(80_000);
        assert_eq!(words(&quotes)[0].len(), 80_000 * 8);
        let open = "${".repeat(500_000);
        assert_eq!(err(&open).kind, ErrorKind::BadSubstitution);
        let unterminated = "\"".to_string() + &"\\\"".repeat(500_000);
        assert_eq!(err(&unterminated).kind, ErrorKind::UnterminatedDoubleQuote);
    }

    #[test]
    fn every_prefix_of_a_tricky_line_parses_or_errors() {
        let line = "echo 'a b' \"c $HOME \\\" d\" e\\ f ${X}g 2>&1 >> out | wc -l && x || y; z # c";
        for end in (0..=line.len()).filter(|&i| line.is_char_boundary(i)) {
            let _ = parse(&line[..end]);
        }
        assert_eq!(shape(line).len(), 4);
    }
}
