//! Running one pipeline: each command a native command or a Linux program,
//! joined by channels (native to native directly; a Linux program's side
//! through pumps), redirections to and from native files, the terminal at
//! both ends. The shell waits for every stage, feeds what is typed to the
//! first one (a line at a time, echoed; Ctrl-D ends its input) and ends
//! them all on Ctrl-C (status 130).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use starina::abi::Readiness;
use starina::abi::Rights;
use starina::channel::Channel;
use starina::channel::MessageBuffer;
use starina::command::Input;
use starina::command::Job;
use starina::command::Output;
use starina::command::Request;
use starina::command::Stdio;
use starina::console::Console;
use starina::fs::Files;
use starina::fs::OpenOptions;
use starina::poll::Poll;
use starina::Error;
use starina::Message;

use crate::linux::LinuxStage;
use crate::parse::Command;
use crate::parse::Target;
use crate::pump::Sink;
use crate::pump::Source;
use crate::{linux, path, pump};

/// What a pipeline runs with.
pub struct Ctx<'a> {
    pub spawn: &'a starina::command::Spawner,
    pub linux: Option<&'a Channel>,
    pub files: Option<&'a mut Files>,
    pub console: &'a Console,
    pub cwd: &'a str,
    pub natives: &'a [&'static str],
}

enum Stage {
    Native(Job),
    Linux(LinuxStage),
    /// It could not start: its status.
    Failed(i32),
}

fn pair() -> Result<(Channel, Channel), String> {
    Channel::create().map_err(|e| format!("shell: {e}"))
}

/// A second handle to `c` (for a thread of its own).
pub(crate) fn dup(c: &Channel) -> Result<Channel, String> {
    c.handle()
        .duplicate(Rights::DEFAULT)
        .map(Channel::from_handle)
        .map_err(|e| format!("shell: {e}"))
}

fn console_dup(c: &Console) -> Result<Console, String> {
    c.duplicate().map_err(|e| format!("shell: {e}"))
}

/// Runs `commands` (already expanded) as one pipeline: its status, and
/// what was typed meanwhile and not yet given to it (a line without its
/// Enter: type-ahead for the shell's next prompt).
pub fn run(cx: &mut Ctx<'_>, commands: &[Command<String>]) -> (i32, Vec<u8>) {
    match start_all(cx, commands) {
        Ok(running) => running.wait(cx.console),
        Err(why) => {
            let _ = cx.console.write(&pump::crlf(format!("{why}\n").as_bytes()));
            (1, Vec::new())
        }
    }
}

struct Running {
    stages: Vec<Stage>,
    /// Where typed lines go (the first stage reads the terminal).
    terminal_in: Option<Output>,
    notify: Channel,
    done: Channel,
}

fn start_all(cx: &mut Ctx<'_>, commands: &[Command<String>]) -> Result<Running, String> {
    let (done_tx, done_rx) = pair()?;
    let (notify_tx, notify_rx) = pair()?;
    let mut stages = Vec::new();
    let mut terminal_in = None;
    let mut next_stdin: Option<Channel> = None;
    let last = commands.len() - 1;
    for (i, cmd) in commands.iter().enumerate() {
        let plan = Plan::of(cmd)?;
        let stdin = match (&plan.stdin, next_stdin.take()) {
            (Some(file), _) => from_file(cx, file, &done_tx)?,
            (None, Some(r)) => r,
            (None, None) => {
                let (w, r) = pair()?;
                terminal_in = Some(Output::new(w));
                r
            }
        };
        let (out_w, out_r) = pair()?;
        match &plan.stdout {
            Some(dest) => to_file(cx, dest, out_r, &done_tx)?,
            None if i == last => to_console(cx, out_r, &done_tx)?,
            None => next_stdin = Some(out_r),
        }
        let err_w = if plan.err_to_out {
            dup(&out_w)?
        } else {
            let (err_w, err_r) = pair()?;
            match &plan.stderr {
                Some(dest) => to_file(cx, dest, err_r, &done_tx)?,
                None => to_console(cx, err_r, &done_tx)?,
            }
            err_w
        };
        let io = [stdin, out_w, err_w];
        stages.push(start_stage(cx, i, &cmd.words, io, &notify_tx, &done_tx));
    }
    Ok(Running {
        stages,
        terminal_in,
        notify: notify_rx,
        done: done_rx,
    })
}

/// A command's redirections: a file for stdin, stdout and stderr (path,
/// append), and whether stderr goes where stdout goes (`2>&1`).
struct Plan {
    stdin: Option<String>,
    stdout: Option<(String, bool)>,
    stderr: Option<(String, bool)>,
    err_to_out: bool,
}

impl Plan {
    fn of(cmd: &Command<String>) -> Result<Plan, String> {
        let mut plan = Plan {
            stdin: None,
            stdout: None,
            stderr: None,
            err_to_out: false,
        };
        for r in &cmd.redirects {
            match (r.fd, &r.target) {
                (0, Target::Read(f)) => plan.stdin = Some(f.clone()),
                (1, Target::Write(f)) => plan.stdout = Some((f.clone(), false)),
                (1, Target::Append(f)) => plan.stdout = Some((f.clone(), true)),
                (2, Target::Write(f)) => plan.stderr = Some((f.clone(), false)),
                (2, Target::Append(f)) => plan.stderr = Some((f.clone(), true)),
                (2, Target::Dup(1)) => plan.err_to_out = true,
                (fd, _) => return Err(format!("shell: redirection of descriptor {fd} is not supported")),
            }
        }
        Ok(plan)
    }
}

fn files<'c>(cx: &'c mut Ctx<'_>) -> Result<&'c mut Files, String> {
    cx.files
        .as_deref_mut()
        .ok_or_else(|| String::from("shell: no native file system in this profile"))
}

/// A pump from native file `name` into a new stream; its reading end.
fn from_file(cx: &mut Ctx<'_>, name: &str, done: &Channel) -> Result<Channel, String> {
    let full = path::resolve(cx.cwd, name);
    let file = files(cx)?
        .open(&full, &OpenOptions::read())
        .map_err(|e| format!("shell: {name}: {}", e.text))?;
    let (w, r) = pair()?;
    pump::start(Source::File(file), Sink::Stream(Output::new(w)), dup(done)?)
        .map_err(|e| format!("shell: {e}"))?;
    Ok(r)
}

/// A pump from `r` into native file `dest` (created; truncated unless
/// appending).
fn to_file(cx: &mut Ctx<'_>, dest: &(String, bool), r: Channel, done: &Channel) -> Result<(), String> {
    let (name, append) = dest;
    let full = path::resolve(cx.cwd, name);
    let mut options = OpenOptions::write();
    options.create();
    if *append {
        options.append();
    } else {
        options.truncate();
    }
    let mut file = files(cx)?
        .open(&full, &options)
        .map_err(|e| format!("shell: {name}: {}", e.text))?;
    let at = if *append {
        file.stat().map(|s| s.size).unwrap_or(0)
    } else {
        0
    };
    pump::start(Source::Stream(Input::new(r)), Sink::File(file, at), dup(done)?)
        .map_err(|e| format!("shell: {e}"))
}

fn to_console(cx: &Ctx<'_>, r: Channel, done: &Channel) -> Result<(), String> {
    pump::start(
        Source::Stream(Input::new(r)),
        Sink::Console(console_dup(cx.console)?),
        dup(done)?,
    )
    .map_err(|e| format!("shell: {e}"))
}

/// Starts stage `index`: a native command when its name is one (and no
/// `linux` prefix), else a Linux program.
fn start_stage(
    cx: &mut Ctx<'_>,
    index: usize,
    words: &[String],
    io: [Channel; 3],
    notify: &Channel,
    done: &Channel,
) -> Stage {
    let (linux_forced, argv) = match words.first().map(String::as_str) {
        Some("linux") => (true, &words[1..]),
        _ => (false, words),
    };
    let Some(name) = argv.first() else {
        return fail(&io[2], "linux: which program?", 2);
    };
    if !linux_forced && cx.natives.contains(&name.as_str()) {
        let [stdin, stdout, stderr] = io;
        let mut request = Request::new(name, &[]);
        request.args = argv.to_vec();
        request.vars.push((String::from("PWD"), String::from(cx.cwd)));
        return match cx.spawn.spawn_request(&request, Stdio { stdin, stdout, stderr }) {
            Ok(job) => Stage::Native(job),
            Err(e) => Stage::Failed(report_spawn_error(cx, name, e)),
        };
    }
    let Some(linux) = cx.linux else {
        return fail(&io[2], &format!("shell: {name}: command not found"), 127);
    };
    let cwd = path::native_to_linux(cx.cwd);
    let notify = match dup(notify) {
        Ok(n) => (index, n),
        Err(e) => return fail(&io[2], &e, 1),
    };
    let err = match dup(&io[2]) {
        Ok(e) => e,
        Err(e) => return fail(&io[2], &e, 1),
    };
    match linux::start(linux, argv, &cwd, io, notify, done) {
        Ok(stage) => Stage::Linux(stage),
        Err(why) => fail(&err, &why, 126),
    }
}

fn fail(stderr: &Channel, why: &str, status: i32) -> Stage {
    let _ = stderr.send_data(format!("{why}\n").as_bytes());
    Stage::Failed(status)
}

fn report_spawn_error(cx: &Ctx<'_>, name: &str, e: Error) -> i32 {
    let text = match e {
        Error::NotFound => format!("shell: {name}: this profile lacks a service it needs (see `log`)\n"),
        e => format!("shell: {name}: {e}\n"),
    };
    let _ = cx.console.write(&pump::crlf(text.as_bytes()));
    126
}

impl Running {
    /// Waits for every stage (and every pump), feeding the terminal's input
    /// to the first stage; the last stage's status.
    fn wait(mut self, console: &Console) -> (i32, Vec<u8>) {
        let mut statuses: Vec<Option<i32>> = self
            .stages
            .iter()
            .map(|s| match s {
                Stage::Failed(status) => Some(*status),
                _ => None,
            })
            .collect();
        let Ok(poll) = Poll::create() else {
            return (1, Vec::new());
        };
        let _ = poll.add(console.id(), Readiness::READABLE);
        let _ = poll.add(self.notify.id(), Readiness::READABLE);
        for stage in &self.stages {
            if let Stage::Native(job) = stage {
                let _ = poll.add(job.id(), Readiness::READABLE);
            }
        }
        let mut line = Vec::new();
        let mut interrupted = false;
        while statuses.iter().any(Option::is_none) {
            if poll.wait().is_err() {
                break;
            }
            self.collect(&mut statuses);
            if self.typed(console, &mut line) {
                // A second Ctrl-C kills what ignored the first.
                self.kill(interrupted);
                interrupted = true;
            }
        }
        self.terminal_in = None;
        self.wait_for_pumps();
        if interrupted {
            let _ = console.write(b"^C\r\n");
            return (130, Vec::new());
        }
        // The unfinished line goes back to the prompt: unsay its echo.
        for _ in 0..line.len() {
            let _ = console.write(b"\x08 \x08");
        }
        (statuses.last().copied().flatten().unwrap_or(1), line)
    }

    /// Statuses that came in: native jobs that ended, Linux `index:status`.
    fn collect(&mut self, statuses: &mut [Option<i32>]) {
        for (i, stage) in self.stages.iter().enumerate() {
            if let (Stage::Native(job), None) = (stage, statuses[i]) {
                if let Ok(Some(status)) = job.status() {
                    statuses[i] = Some(status);
                }
            }
        }
        let mut buf = MessageBuffer::new();
        while let Ok(Message::Data(d)) = self.notify.try_recv(&mut buf) {
            let text = core::str::from_utf8(d).unwrap_or("");
            if let Some((i, s)) = text.split_once(':') {
                if let (Ok(i), Ok(s)) = (i.parse::<usize>(), s.parse::<i32>()) {
                    if let Some(slot) = statuses.get_mut(i) {
                        *slot = Some(s);
                    }
                }
            }
        }
    }

    /// Takes what was typed: lines to the first stage (echoed, with
    /// backspace), Ctrl-D ends its input. True on Ctrl-C.
    fn typed(&mut self, console: &Console, line: &mut Vec<u8>) -> bool {
        let mut buf = [0u8; 256];
        while let Ok(n) = console.read(&mut buf) {
            for &b in &buf[..n] {
                match b {
                    0x03 => return true,
                    0x04 => {
                        self.send_line(line);
                        if let Some(mut w) = self.terminal_in.take() {
                            let _ = w.close();
                        }
                    }
                    b'\r' | b'\n' => {
                        let _ = console.write(b"\r\n");
                        line.push(b'\n');
                        self.send_line(line);
                    }
                    0x7f | 0x08 if !line.is_empty() => {
                        line.pop();
                        let _ = console.write(b"\x08 \x08");
                    }
                    b if b >= 0x20 && line.len() < 4096 => {
                        line.push(b);
                        let _ = console.write(&[b]);
                    }
                    _ => {}
                }
            }
        }
        false
    }

    fn send_line(&mut self, line: &mut Vec<u8>) {
        if let Some(w) = self.terminal_in.as_mut() {
            if !line.is_empty() && w.write(line).is_err() {
                self.terminal_in = None;
            }
        }
        line.clear();
    }

    /// Ends every stage: native jobs are killed, Linux programs get SIGINT
    /// (SIGKILL when `force`).
    fn kill(&mut self, force: bool) {
        for stage in &self.stages {
            match stage {
                Stage::Native(job) => {
                    let _ = job.kill();
                }
                Stage::Linux(l) => {
                    let _ = l.control.send(Message::Abort {
                        code: if force { 9 } else { 2 },
                        reason: "interrupted",
                    });
                }
                Stage::Failed(_) => {}
            }
        }
    }

    /// Waits (at most 2 s) until every pump has finished its output, so
    /// the prompt comes after it.
    fn wait_for_pumps(&self) {
        // No one sends on it: it answers when the last pump's copy closes
        // (`PeerClosed`) or at the timeout.
        let _ = self.done.recv_within(&mut MessageBuffer::new(), 2_000);
    }
}
