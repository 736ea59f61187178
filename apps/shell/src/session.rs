//! The shell's session on the console: the prompt, the line editor, and
//! running each line: its pipelines in order as `;`, `&&` and `||` say,
//! the builtins (`cd`, `pwd`, `exit`, `help`), `$?`.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use starina::abi::Readiness;
use starina::channel::Channel;
use starina::command::Spawner;
use starina::console::Console;
use starina::fs::Files;
use starina::poll::Poll;
use starina::Error;

use crate::complete;
use crate::editor::Editor;
use crate::editor::Event;
use crate::parse;
use crate::parse::Command;
use crate::path;
use crate::pipeline;
use crate::pump::crlf;

const BUILTINS: &[&str] = &["cd", "pwd", "exit", "help", "linux"];

pub struct Session {
    pub console: Console,
    pub spawn: Spawner,
    pub linux: Option<Channel>,
    pub files: Option<Files>,
    cwd: String,
    status: i32,
    editor: Editor,
    natives: Vec<&'static str>,
    /// Keys typed while a pipeline ran that it did not take.
    type_ahead: Vec<u8>,
}

impl Session {
    pub fn new(console: Console, spawn: Spawner, linux: Option<Channel>, files: Option<Files>) -> Session {
        let natives = spawn.names().unwrap_or_default();
        Session {
            console,
            spawn,
            linux,
            files,
            cwd: String::from("/"),
            status: 0,
            editor: Editor::new("/ $ "),
            natives,
            type_ahead: Vec::new(),
        }
    }

    fn say(&self, text: &str) {
        let _ = self.console.write(&crlf(text.as_bytes()));
    }

    /// Reads and runs lines until the console fails.
    pub fn run(&mut self) -> Result<(), Error> {
        let poll = Poll::create()?;
        poll.add(self.console.id(), Readiness::READABLE)?;
        self.say("Starina shell: native commands, Linux programs by name or `linux CMD`; `help` for more.\n");
        self.prompt();
        let mut buf = [0u8; 256];
        loop {
            poll.wait()?;
            loop {
                let n = match self.console.read(&mut buf) {
                    Ok(n) => n,
                    Err(Error::WouldBlock) => break,
                    Err(e) => return Err(e),
                };
                for &b in &buf[..n] {
                    self.key(b);
                }
            }
        }
    }

    fn prompt(&mut self) {
        self.editor.set_prompt(&format!("{} $ ", self.cwd));
        self.editor.begin_line();
        self.flush_editor();
    }

    fn flush_editor(&mut self) {
        let out = self.editor.take_output();
        let _ = self.console.write(&out);
    }

    fn key(&mut self, byte: u8) {
        let event = self.editor.feed(byte);
        self.flush_editor();
        match event {
            Event::None => {}
            Event::Line(line) => {
                self.run_line(&line);
                self.prompt();
                for b in core::mem::take(&mut self.type_ahead) {
                    self.key(b);
                }
            }
            Event::Interrupted => {
                self.status = 130;
                self.prompt();
            }
            Event::EndOfInput => {
                self.say("(the console shell does not exit; Ctrl-] x leaves QEMU)\n");
                self.prompt();
            }
            Event::Complete { before, repeated } => self.complete(&before, repeated),
        }
    }

    fn complete(&mut self, before: &str, repeated: bool) {
        let mut names: Vec<&str> = self.natives.clone();
        names.extend_from_slice(BUILTINS);
        let files = &mut self.files;
        let mut list = |dir: &str| -> Result<Vec<complete::Entry>, ()> {
            let files = files.as_mut().ok_or(())?;
            let entries = files.read_dir(dir).map_err(|_| ())?;
            Ok(entries
                .into_iter()
                .map(|e| (String::from_utf8_lossy(&e.name).into_owned(), e.kind == starina::fs::FileType::Directory))
                .collect())
        };
        complete::complete(before, repeated, &self.cwd, &names, &mut list).apply(&mut self.editor);
        self.flush_editor();
    }

    /// Runs one line: its pipelines as the connectors say.
    pub fn run_line(&mut self, line: &str) {
        let list = match parse::parse(line) {
            Ok(list) => list,
            Err(e) => {
                self.say(&format!("shell: {e}\n"));
                self.status = 2;
                return;
            }
        };
        for (connector, pipeline) in &list.items {
            if !connector.runs_after(self.status) {
                continue;
            }
            let status = self.status;
            let lookup = |name: &str| match name {
                "?" => Some(format!("{status}")),
                "PWD" => Some(self.cwd.clone()),
                _ => None,
            };
            let mut commands = Vec::new();
            for cmd in pipeline {
                match cmd.expand(&lookup) {
                    Ok(c) => commands.push(c),
                    Err(e) => {
                        self.say(&format!("shell: {e}\n"));
                        self.status = 2;
                        return;
                    }
                }
            }
            self.status = self.run_pipeline(&commands);
        }
    }

    fn run_pipeline(&mut self, commands: &[Command<String>]) -> i32 {
        if commands.iter().all(|c| c.words.is_empty()) {
            return self.status;
        }
        if let [single] = commands {
            if let Some(status) = self.builtin(&single.words) {
                return status;
            }
        }
        let mut cx = pipeline::Ctx {
            spawn: &self.spawn,
            linux: self.linux.as_ref(),
            files: self.files.as_mut(),
            console: &self.console,
            cwd: &self.cwd,
            natives: &self.natives,
        };
        let (status, rest) = pipeline::run(&mut cx, commands);
        self.type_ahead.extend_from_slice(&rest);
        status
    }

    /// A builtin's status, or `None` if the command is not one.
    fn builtin(&mut self, words: &[String]) -> Option<i32> {
        let args: Vec<&str> = words.iter().map(String::as_str).collect();
        Some(match args.as_slice() {
            ["cd"] => self.cd("/"),
            ["cd", dir] => self.cd(dir),
            ["cd", ..] => self.usage("cd: too many arguments"),
            ["pwd"] => {
                self.say(&format!("{}\n", self.cwd));
                0
            }
            ["exit", ..] => self.usage("exit: the console shell stays; Ctrl-] x leaves QEMU"),
            ["help"] => {
                self.help();
                0
            }
            _ => return None,
        })
    }

    fn usage(&self, text: &str) -> i32 {
        self.say(&format!("{text}\n"));
        2
    }

    fn cd(&mut self, dir: &str) -> i32 {
        let target = path::resolve(&self.cwd, dir);
        let Some(files) = self.files.as_mut() else {
            self.say("cd: no native file system in this profile\n");
            return 1;
        };
        match files.stat(&target) {
            Ok(st) if st.kind == starina::fs::FileType::Directory => {
                self.cwd = target;
                0
            }
            Ok(_) => self.usage_1(&format!("cd: {dir}: not a directory\n")),
            Err(e) => self.usage_1(&format!("cd: {dir}: {}\n", e.text)),
        }
    }

    fn usage_1(&self, text: &str) -> i32 {
        self.say(text);
        1
    }

    fn help(&self) {
        let mut text = String::from(
            "Builtins: cd [DIR], pwd, help. `linux CMD ...` runs CMD in Linux.\n\
             Pipes |, redirections < > >> 2> 2>&1, lists ; && ||, $? and quotes work.\n\
             Keys: Tab completes, Up/Down history, Ctrl-C interrupts, Ctrl-A/E/U/W edit.\n\
             Native commands:",
        );
        for name in &self.natives {
            text.push(' ');
            text.push_str(name);
        }
        text.push_str(if self.linux.is_some() {
            "\nAny other name runs in Linux.\n"
        } else {
            "\n(No Linux in this profile.)\n"
        });
        self.say(&text);
    }
}

#[cfg(test)]
mod tests {
    use crate::editor::{Editor, Event};

    #[test]
    fn up_after_a_line_and_a_new_prompt_recalls_it() {
        let mut ed = Editor::new("/ $ ");
        ed.begin_line();
        let mut last = Event::None;
        for b in b"echo once more\r" {
            last = ed.feed(*b);
        }
        assert!(matches!(last, Event::Line(_)));
        ed.set_prompt("/ $ ");
        ed.begin_line();
        for b in b"\x1b[A\r" {
            last = ed.feed(*b);
        }
        match last {
            Event::Line(l) => assert_eq!(l, "echo once more"),
            other => panic!("{other:?}"),
        }
    }
}
