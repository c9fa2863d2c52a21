//! Child processes that cannot outlive the test process, and free ports.

use std::{
    fs::File,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use super::EnvtestError;

/// Runs the binary under a small `sh` supervisor that kills it as soon as the
/// supervisor's stdin reaches end-of-file, and then removes the scratch directory it was
/// given. The test process holds the write end of that pipe, so the binary dies however
/// the test process ends: a normal drop, a panic, `std::process::exit` with the server in
/// a static, or SIGKILL. A binary that exits by itself leaves the scratch directory alone,
/// so the harness can still read its log.
///
/// The supervisor's stdin is saved as fd 3 because an asynchronous list in a
/// non-interactive shell gets `/dev/null` as its stdin. 137 is 128 + SIGKILL.
#[cfg(unix)]
const SUPERVISOR: &str = r#"scratch="$1"; shift
exec 3<&0
"$@" </dev/null &
child=$!
( read -r _ <&3; kill -KILL "$child" 2>/dev/null ) &
watchdog=$!
exec 3<&-
wait "$child"; status=$?
kill "$watchdog" 2>/dev/null
if [ "$status" -eq 137 ] && [ -n "$scratch" ]; then rm -rf "$scratch"; fi
exit "$status""#;

/// How long [`Process::stop`] waits for the supervisor before killing its process group.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A running `etcd` or `kube-apiserver`, its output going to a log file.
#[derive(Debug)]
pub(super) struct Process {
    name: String,
    child: Child,
    log: PathBuf,
    stopped: bool,
}

impl Process {
    /// Starts `path args…` with stdout and stderr in `log`. `scratch` is removed once the
    /// binary has been stopped, even when the test process died without cleaning up.
    pub(super) fn spawn(
        name: &str,
        path: &Path,
        args: &[String],
        log: PathBuf,
        scratch: Option<&Path>,
    ) -> Result<Self, EnvtestError> {
        let out = File::create(&log)
            .map_err(|e| EnvtestError::io(format!("creating {}", log.display()), e))?;
        let err = out
            .try_clone()
            .map_err(|e| EnvtestError::io(format!("opening {}", log.display()), e))?;
        let mut command = supervised(path, args, scratch);
        command.stdout(out).stderr(err);
        let child = command.spawn().map_err(|source| EnvtestError::Spawn {
            name: name.to_string(),
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Process {
            name: name.to_string(),
            child,
            log,
            stopped: false,
        })
    }

    /// The binary's file name.
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// The exit status, if the process has exited.
    pub(super) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The last `lines` lines of the process's output.
    pub(super) fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// An error saying the process exited, with its log tail.
    pub(super) fn exited_error(&self, status: ExitStatus) -> EnvtestError {
        EnvtestError::Exited {
            name: self.name.clone(),
            status: status.to_string(),
            log_tail: self.log_tail(LOG_TAIL_LINES),
        }
    }

    /// Stops the process and waits for it; idempotent.
    pub(super) fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        // Closing the supervisor's stdin makes it kill the binary and exit.
        drop(self.child.stdin.take());
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        kill_group(&self.child);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How many log lines an error shows.
pub(super) const LOG_TAIL_LINES: usize = 25;

#[cfg(unix)]
fn supervised(path: &Path, args: &[String], scratch: Option<&Path>) -> Command {
    use std::os::unix::process::CommandExt as _;
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(SUPERVISOR)
        .arg("kube-reconcile-envtest")
        .arg(scratch.map_or_else(Default::default, Path::as_os_str))
        .arg(path)
        .args(args)
        .stdin(Stdio::piped())
        // Its own process group: a Ctrl-C meant for the test runner reaches the test
        // process, whose exit then stops the binary through the closed pipe.
        .process_group(0);
    command
}

#[cfg(not(unix))]
fn supervised(path: &Path, args: &[String], _scratch: Option<&Path>) -> Command {
    let mut command = Command::new(path);
    command.args(args).stdin(Stdio::null());
    command
}

#[cfg(unix)]
fn kill_group(child: &Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

#[cfg(not(unix))]
fn kill_group(_child: &Child) {}

/// `n` distinct free TCP ports on 127.0.0.1 (all held open together while choosing).
pub(super) fn free_ports(n: usize) -> Result<Vec<u16>, EnvtestError> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| EnvtestError::io("binding a free port on 127.0.0.1", e))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| EnvtestError::io("reading a bound port", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "kube-reconcile-process-test-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        dir
    }

    #[test]
    fn free_ports_are_distinct() {
        let ports = free_ports(3).expect("ports");
        assert_eq!(ports.len(), 3);
        assert!(ports[0] != ports[1] && ports[1] != ports[2] && ports[0] != ports[2]);
    }

    #[cfg(unix)]
    #[test]
    fn stopping_kills_the_binary_and_removes_the_scratch_directory() {
        let dir = scratch();
        let log = dir.join("sleep.log");
        let work = dir.join("work");
        std::fs::create_dir_all(&work).expect("create work dir");
        let mut process = Process::spawn(
            "sleep",
            Path::new("/bin/sleep"),
            &["300".to_string()],
            log,
            Some(&work),
        )
        .expect("spawn");
        assert!(process.exited().is_none());
        let started = Instant::now();
        process.stop();
        assert!(process.exited().is_some());
        assert!(
            started.elapsed() < STOP_GRACE,
            "stopped through the pipe, not the fallback"
        );
        assert!(!work.exists());
        std::fs::remove_dir_all(&dir).expect("remove scratch dir");
    }

    #[cfg(unix)]
    #[test]
    fn an_exited_binary_reports_its_status_and_log_tail() {
        let dir = scratch();
        let mut process = Process::spawn(
            "sh",
            Path::new("/bin/sh"),
            &[
                "-c".to_string(),
                "echo first; echo boom >&2; exit 3".to_string(),
            ],
            dir.join("sh.log"),
            None,
        )
        .expect("spawn");
        let status = loop {
            if let Some(status) = process.exited() {
                break status;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(status.code(), Some(3));
        let err = process.exited_error(status).to_string();
        assert!(err.contains("sh exited during start-up"), "{err}");
        assert!(err.contains("first\nboom"), "{err}");
        drop(process);
        std::fs::remove_dir_all(&dir).expect("remove scratch dir");
    }
}
