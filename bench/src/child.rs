//! The child processes of a run (routers, subscribers, publishers):
//! started with their stderr collected, killed when dropped.

use std::io::{self, Read};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Collects a child's stream on a thread.
pub fn collect(mut r: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

/// A child of one run, killed when dropped if still running.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    out: Option<JoinHandle<String>>,
    err: Option<JoinHandle<String>>,
}

impl Proc {
    /// Starts `cmd` with no stdin and its stderr collected; its stdout
    /// piped when `stdout` (for [`Proc::stdout`] or
    /// [`Proc::collect_stdout`]), else gone.
    pub fn spawn(cmd: &mut Command, stdout: bool) -> io::Result<Proc> {
        Proc::spawn_to(
            cmd,
            if stdout {
                Stdio::piped()
            } else {
                Stdio::null()
            },
        )
    }

    /// As [`Proc::spawn`], its stdout going to `stdout` (a file, say).
    pub fn spawn_to(cmd: &mut Command, stdout: Stdio) -> io::Result<Proc> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()?;
        let err = child.stderr.take().map(collect);
        Ok(Proc {
            child,
            out: None,
            err,
        })
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Its stdout, to read as it comes (once).
    pub fn stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// Collects `out` (its stdout, or what is left of it) until it exits.
    pub fn collect_stdout(&mut self, out: impl Read + Send + 'static) {
        self.out = Some(collect(out));
    }

    /// Its exit status once it has exited.
    fn exit(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// `None` while it runs; once it has exited, its stdout on success,
    /// else its status and stderr, as `what`'s.
    pub fn poll(&mut self, what: &str) -> Option<Result<String, String>> {
        let status = match self.exit() {
            Ok(Some(status)) => status,
            Ok(None) => return None,
            Err(e) => return Some(Err(format!("{what}: {e}"))),
        };
        let join =
            |h: Option<JoinHandle<String>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
        let (out, err) = (join(self.out.take()), join(self.err.take()));
        Some(if status.success() {
            Ok(out)
        } else {
            Err(format!("{what} {status}: {}", err.trim()))
        })
    }

    /// Waits for it to exit, then [`Proc::poll`].
    pub fn wait(&mut self, what: &str) -> Option<Result<String, String>> {
        let _ = self.child.wait();
        self.poll(what)
    }

    /// `Some(why)` once it has exited, for a process meant to run until
    /// stopped: its status and its stderr's last lines.
    pub fn exited(&mut self, what: &str) -> Option<String> {
        match self.exit() {
            Ok(Some(status)) => {
                let all = self
                    .err
                    .take()
                    .and_then(|h| h.join().ok())
                    .unwrap_or_default();
                let lines: Vec<&str> = all.lines().collect();
                let tail = lines[lines.len().saturating_sub(3)..].join(" / ");
                Some(format!("{what} exited ({status}): {tail}"))
            }
            Ok(None) => None,
            Err(e) => Some(format!("{what}: {e}")),
        }
    }

    /// SIGTERM, then SIGKILL (at drop) if it has not exited within
    /// `grace`.
    pub fn stop(mut self, grace: Duration) {
        let _ = kill(Pid::from_raw(self.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !matches!(self.exit(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
