//! What every command works with: its arguments, its streams, the file
//! system (opened on first use) and the way errors are reported
//! (`<name>: <what>: <why>` on stderr).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use starina::channel::Channel;
use starina::command::CommandError;
use starina::command::Input;
use starina::command::Output;
use starina::command::STATUS_BROKEN_PIPE;
use starina::fs::ErrorKind;
use starina::fs::File;
use starina::fs::FileType;
use starina::fs::Files;
use starina::fs::FsError;
use starina::fs::OpenOptions;

use crate::paths;

pub type Outcome = Result<i32, CommandError>;

/// A running command.
pub struct Ctx {
    /// The name it was called by.
    pub name: String,
    /// The arguments after the name.
    pub args: Vec<String>,
    pub stdin: Input,
    pub stdout: Output,
    pub stderr: Output,
    pub fs: Fs,
}

impl Ctx {
    /// Prints `--help`'s text (usage, then a description): status 0.
    pub fn help(&mut self, usage: &str, description: &str) -> Outcome {
        self.stdout
            .print(&format!("usage: {usage}\n{description}\n"))?;
        Ok(0)
    }

    /// Reports `<name>: <what>: <why>` on stderr.
    pub fn warn(&mut self, what: &str, why: &str) -> Result<(), CommandError> {
        let line = format!("{}: {what}: {why}\n", self.name);
        self.stderr.print(&line)?;
        Ok(())
    }

    /// Reports a failure about `what`: status 1, unless it is a broken
    /// pipe, which ends the command quietly.
    pub fn fail(&mut self, what: &str, e: CommandError) -> Result<i32, CommandError> {
        if e.status == STATUS_BROKEN_PIPE {
            return Err(e);
        }
        self.warn(what, e.message.as_deref().unwrap_or("failed"))?;
        Ok(1)
    }
}

/// The file system, connected on first use, and where relative paths
/// start (`PWD`).
pub struct Fs {
    channel: Option<Channel>,
    files: Option<Files>,
    pub pwd: String,
}

impl Fs {
    pub fn new(channel: Option<Channel>, pwd: Option<&str>) -> Fs {
        Fs {
            channel,
            files: None,
            pwd: paths::resolve("/", pwd.unwrap_or("/")),
        }
    }

    /// The client; an error if this profile has no file system.
    pub fn files(&mut self) -> Result<&mut Files, CommandError> {
        if self.files.is_none() {
            let channel = self.channel.take().ok_or_else(|| {
                CommandError::new("no file system (this profile has no fs service)")
            })?;
            self.files = Some(Files::new(channel).map_err(fs_error)?);
        }
        self.files
            .as_mut()
            .ok_or_else(|| CommandError::new("no file system"))
    }

    /// An operand as an absolute path.
    pub fn path(&self, operand: &str) -> String {
        paths::resolve(&self.pwd, operand)
    }

    /// Opens an operand for reading: a directory is refused.
    pub fn open_read(&mut self, operand: &str) -> Result<File, CommandError> {
        let path = self.path(operand);
        let files = self.files()?;
        let mut file = files.open(&path, &OpenOptions::read()).map_err(fs_error)?;
        if file.stat().map_err(fs_error)?.kind == FileType::Directory {
            return Err(CommandError::new("is a directory"));
        }
        Ok(file)
    }
}

/// Why a file operation failed, in a few words.
pub fn why(e: &FsError) -> String {
    let text = match e.kind {
        ErrorKind::NotFound => "no such file or directory",
        ErrorKind::Exists => "file exists",
        ErrorKind::NotADirectory => "not a directory",
        ErrorKind::IsADirectory => "is a directory",
        ErrorKind::NotEmpty => "directory not empty",
        ErrorKind::NoSpace => "no space left on the disk",
        ErrorKind::ReadOnly => "read-only file system",
        ErrorKind::PermissionDenied => "permission denied",
        ErrorKind::NameTooLong => "name too long",
        ErrorKind::Loop => "too many symbolic links",
        _ => return e.text.clone(),
    };
    String::from(text)
}

/// A file error as a command error with [`why`]'s words.
pub fn fs_error(e: FsError) -> CommandError {
    CommandError::new(why(&e))
}

/// Where a command reads bytes from: stdin or a file, a chunk at a time.
pub enum Source<'a> {
    Stdin(&'a mut Input),
    File {
        file: File,
        offset: u64,
        buf: Vec<u8>,
    },
}

impl<'a> Source<'a> {
    /// `-` is stdin; anything else a file.
    pub fn open(
        fs: &mut Fs,
        stdin: &'a mut Input,
        operand: &str,
    ) -> Result<Source<'a>, CommandError> {
        if operand == "-" {
            return Ok(Source::Stdin(stdin));
        }
        Ok(Source::File {
            file: fs.open_read(operand)?,
            offset: 0,
            buf: alloc::vec![0; starina::fs::wire::READ_MAX],
        })
    }

    /// The next bytes; `None` at the end.
    pub fn chunk(&mut self) -> Result<Option<&[u8]>, CommandError> {
        match self {
            Source::Stdin(input) => Ok(input.read_chunk()?),
            Source::File { file, offset, buf } => {
                let n = file.read_at(*offset, buf).map_err(fs_error)?;
                *offset += n as u64;
                Ok((n > 0).then_some(&buf[..n]))
            }
        }
    }
}

/// Runs `each` on every input operand (stdin for none): a failing one is
/// reported and the others still run; status 1 if any failed.
pub fn each_input(
    ctx: &mut Ctx,
    operands: &[String],
    mut each: impl FnMut(&mut Source<'_>, &mut Output, &str) -> Result<(), CommandError>,
) -> Outcome {
    let stdin_only = [String::from("-")];
    let operands = if operands.is_empty() {
        &stdin_only[..]
    } else {
        operands
    };
    let mut status = 0;
    for operand in operands {
        let result = match Source::open(&mut ctx.fs, &mut ctx.stdin, operand) {
            Ok(mut source) => each(&mut source, &mut ctx.stdout, operand),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            status = ctx.fail(operand, e)?;
        }
    }
    Ok(status)
}
