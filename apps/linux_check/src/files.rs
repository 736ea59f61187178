//! Files shared both ways between a native component and Linux: what this
//! component writes through `starina::fs` is at /mnt/starina in the guest,
//! a native rewrite shows in Linux once the 1 s attribute timeout has
//! passed, and what Linux writes (contents, mode, inode number) is what
//! the native side sees.

use alloc::format;
use alloc::string::String;

use starina::fs::Files;
use starina::fs::FsError;
use starina_bridge::exec::ExecRequest;

use crate::expect_end;
use crate::text;
use crate::Checker;
use crate::End;
use crate::TestResult;

/// The shared directory, natively and in the guest.
const DIR: &str = "/shared";
const GUEST_DIR: &str = "/mnt/starina/shared";

fn fs_err(what: &str) -> impl Fn(FsError) -> String + '_ {
    move |e| format!("{what}: {e}")
}

impl Checker {
    /// `command` in the guest's shell; its stdout, after exit status 0.
    fn guest(&mut self, command: &str) -> Result<String, String> {
        let out = self.run_one(crate::Job::new(ExecRequest::shell(command)))?;
        expect_end(&out, End::Exited(0))
            .map_err(|e| format!("`{command}`: {e} ({})", text(&out.stderr)))?;
        Ok(text(&out.stdout))
    }

    pub fn test_shared_files(&mut self, files: &mut Files) -> TestResult {
        let _ = files.create_dir(DIR, 0o755);
        let native = format!("{DIR}/from-native.txt");
        files
            .write(&native, b"native v1")
            .map_err(fs_err("native write"))?;
        let seen = self.guest(&format!("cat {GUEST_DIR}/from-native.txt"))?;
        if seen != "native v1" {
            return Err(format!("Linux reads {seen:?}, native wrote \"native v1\""));
        }
        // A native rewrite: Linux sees it once its cached attributes expire.
        files
            .write(&native, b"native v2, longer")
            .map_err(fs_err("native rewrite"))?;
        let _ = starina::timer::sleep_ms(1_200);
        let seen = self.guest(&format!("cat {GUEST_DIR}/from-native.txt"))?;
        if seen != "native v2, longer" {
            return Err(format!(
                "after a native rewrite and 1.2 s, Linux reads {seen:?}"
            ));
        }
        let ino = files.stat(&native).map_err(fs_err("native stat"))?.ino;
        let guest_ino = self.guest(&format!("stat -c %i {GUEST_DIR}/from-native.txt"))?;
        if guest_ino.trim() != format!("{ino}") {
            return Err(format!(
                "inode {ino} natively, {} in Linux",
                guest_ino.trim()
            ));
        }
        // The other way: contents and mode as Linux left them.
        let linux = format!("{DIR}/from-linux.txt");
        self.guest(&format!(
            "echo from linux > {GUEST_DIR}/from-linux.txt && chmod 640 {GUEST_DIR}/from-linux.txt"
        ))?;
        let data = files.read(&linux).map_err(fs_err("native read"))?;
        if data != b"from linux\n" {
            return Err(format!(
                "native reads {:?}, Linux wrote \"from linux\\n\"",
                String::from_utf8_lossy(&data)
            ));
        }
        let mode = files.stat(&linux).map_err(fs_err("native stat"))?.mode;
        if mode != 0o640 {
            return Err(format!("mode {mode:o} natively after chmod 640 in Linux"));
        }
        Ok(())
    }
}
