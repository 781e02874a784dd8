//! The one way HwameiStor runs host commands.
//!
//! Every external tool (`lvcreate`, `mkfs.xfs`, `losetup`, `smartctl`, `drbdadm`, ...) is run
//! through a [`Runner`]. A command is an argv vector ([`Cmd`]) — never a shell string — with a
//! timeout; the child is killed if the timeout fires or the future is dropped.
//!
//! Implementations:
//! - [`TokioRunner`]: spawns the process with tokio (`kill_on_drop`), captures stdout/stderr.
//! - [`HostNamespace`]: a decorator that enters the host's namespaces through `nsenter`
//!   (PID 1's mount, IPC, network and UTS namespaces), for a node agent running in a
//!   privileged container with `hostPID`.
//! - [`RecordingRunner`]: a fake for unit tests. It answers from canned responses keyed by
//!   argv and records every call so tests can assert the exact command lines.
//!
//! Errors keep a spawn failure ([`Error::Spawn`], e.g. the tool is not installed) apart from a
//! command that ran and failed ([`Error::Failed`], with exit code and stderr) and from a
//! timeout ([`Error::Timeout`]).

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;

/// Default time a command may run before it is killed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors from running a command. The `command` field is the argv joined by spaces, for
/// humans; never feed it back to a shell.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The process could not be started (program missing, permission denied, ...).
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    /// The process ran and exited with a non-zero status (or was killed by a signal, `code`
    /// is then `None`).
    #[error("`{command}` failed with exit code {}: {}", code.map_or("(signal)".to_string(), |c| c.to_string()), stderr.trim())]
    Failed {
        command: String,
        code: Option<i32>,
        stdout: String,
        stderr: String,
    },
    /// The process did not finish in time and was killed.
    #[error("`{command}` timed out after {after:?} and was killed")]
    Timeout { command: String, after: Duration },
    /// Reading or writing the child's pipes failed.
    #[error("i/o with `{command}` failed: {source}")]
    Io {
        command: String,
        #[source]
        source: std::io::Error,
    },
    /// The recording fake got a command it had no answer for.
    #[error("unexpected command `{command}` (no canned response)")]
    Unexpected { command: String },
}

impl Error {
    /// The stderr of a failed command, or "" for other errors.
    pub fn stderr(&self) -> &str {
        match self {
            Error::Failed { stderr, .. } => stderr,
            _ => "",
        }
    }

    /// The exit code of a failed command.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            Error::Failed { code, .. } => *code,
            _ => None,
        }
    }

    /// True if the program could not be started because it does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Spawn { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A command line: program, arguments, optional stdin, environment additions and timeout.
#[derive(Clone, PartialEq, Eq)]
pub struct Cmd {
    program: String,
    args: Vec<String>,
    stdin: Option<Vec<u8>>,
    env: Vec<(String, String)>,
    timeout: Duration,
}

impl Cmd {
    /// A command running `program` with no arguments and the default timeout.
    pub fn new(program: impl Into<String>) -> Self {
        Cmd {
            program: program.into(),
            args: Vec::new(),
            stdin: None,
            env: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Append one argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Append several arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Bytes written to the child's stdin (then closed). Use this for secrets instead of
    /// argv, which is world-readable in /proc. The bytes are never shown by `Debug`.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// Set an environment variable for the child.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// How long the command may run before it is killed.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn program(&self) -> &str {
        &self.program
    }

    pub fn get_args(&self) -> &[String] {
        &self.args
    }

    pub fn get_timeout(&self) -> Duration {
        self.timeout
    }

    /// Program and arguments as one vector.
    pub fn argv(&self) -> Vec<String> {
        std::iter::once(self.program.clone())
            .chain(self.args.iter().cloned())
            .collect()
    }

    /// The argv joined by spaces, for messages and logs.
    pub fn display(&self) -> String {
        self.argv().join(" ")
    }

    /// Wrap this command so it runs through `prefix` (e.g. `nsenter ... --`): the result runs
    /// `prefix[0] prefix[1..] program args`.
    pub fn wrapped(&self, prefix: &[&str]) -> Cmd {
        let mut args: Vec<String> = prefix[1..].iter().map(|s| s.to_string()).collect();
        args.push(self.program.clone());
        args.extend(self.args.iter().cloned());
        Cmd {
            program: prefix[0].to_string(),
            args,
            stdin: self.stdin.clone(),
            env: self.env.clone(),
            timeout: self.timeout,
        }
    }
}

impl fmt::Debug for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cmd")
            .field("argv", &self.argv())
            .field(
                "stdin",
                &self.stdin.as_ref().map(|b| format!("<{} bytes>", b.len())),
            )
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// What a finished command printed, and its exit code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// Exit code; `None` if the process was killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// A successful output with the given stdout (handy for fakes).
    pub fn ok(stdout: impl Into<String>) -> Self {
        Output {
            code: Some(0),
            stdout: stdout.into(),
            stderr: String::new(),
        }
    }

    /// A failed output with the given exit code and stderr (handy for fakes).
    pub fn failed(code: i32, stderr: impl Into<String>) -> Self {
        Output {
            code: Some(code),
            stdout: String::new(),
            stderr: stderr.into(),
        }
    }

    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Runs commands. Implementations must never involve a shell.
#[async_trait]
pub trait Runner: Send + Sync + fmt::Debug {
    /// Run the command to completion and return its output whatever the exit code. Errors
    /// only for spawn failures, i/o errors and timeouts.
    async fn output(&self, cmd: &Cmd) -> Result<Output>;

    /// The mount table (`mountinfo` text) of the mount namespace the commands run in: what
    /// `findmnt` would see, read without starting a process. Parse it with
    /// `hwameistor_core::mountinfo`.
    fn mount_table(&self) -> std::io::Result<String> {
        std::fs::read_to_string("/proc/self/mountinfo")
    }

    /// Run the command and require exit code 0; a non-zero exit becomes [`Error::Failed`].
    async fn run(&self, cmd: &Cmd) -> Result<Output> {
        let out = self.output(cmd).await?;
        if out.success() {
            Ok(out)
        } else {
            Err(Error::Failed {
                command: cmd.display(),
                code: out.code,
                stdout: out.stdout,
                stderr: out.stderr,
            })
        }
    }
}

/// A shared, dynamically dispatched runner.
pub type SharedRunner = Arc<dyn Runner>;

/// Runs commands as child processes of this process, with tokio.
#[derive(Debug, Clone, Default)]
pub struct TokioRunner;

impl TokioRunner {
    pub fn new() -> Self {
        TokioRunner
    }

    /// A shared handle, the form most components take.
    pub fn shared() -> SharedRunner {
        Arc::new(TokioRunner)
    }
}

#[async_trait]
impl Runner for TokioRunner {
    async fn output(&self, cmd: &Cmd) -> Result<Output> {
        let command = cmd.display();
        tracing::debug!(command = %command, "run");
        let mut child_cmd = tokio::process::Command::new(&cmd.program);
        child_cmd
            .args(&cmd.args)
            .stdin(if cmd.stdin.is_some() {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            })
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in &cmd.env {
            child_cmd.env(k, v);
        }
        let mut child = child_cmd.spawn().map_err(|source| Error::Spawn {
            command: command.clone(),
            source,
        })?;
        if let Some(bytes) = &cmd.stdin {
            let mut stdin = child.stdin.take().ok_or_else(|| Error::Io {
                command: command.clone(),
                source: std::io::Error::other("stdin pipe missing"),
            })?;
            let bytes = bytes.clone();
            // Write in a task so a child that does not read stdin cannot deadlock us.
            tokio::spawn(async move {
                let _ = stdin.write_all(&bytes).await;
                let _ = stdin.shutdown().await;
            });
        }
        match tokio::time::timeout(cmd.timeout, child.wait_with_output()).await {
            Err(_) => Err(Error::Timeout {
                command,
                after: cmd.timeout,
            }),
            Ok(Err(source)) => Err(Error::Io { command, source }),
            Ok(Ok(out)) => Ok(Output {
                code: out.status.code(),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }),
        }
    }
}

/// Runs every command inside the namespaces of PID 1 (the host, when this process runs in a
/// privileged container with `hostPID: true`) through `nsenter`.
#[derive(Debug, Clone)]
pub struct HostNamespace<R> {
    inner: R,
}

/// The `nsenter` prefix used by [`HostNamespace`].
pub const NSENTER_PREFIX: &[&str] = &[
    "nsenter",
    "--mount=/proc/1/ns/mnt",
    "--ipc=/proc/1/ns/ipc",
    "--net=/proc/1/ns/net",
    "--uts=/proc/1/ns/uts",
    "--",
];

impl<R: Runner> HostNamespace<R> {
    pub fn new(inner: R) -> Self {
        HostNamespace { inner }
    }
}

#[async_trait]
impl<R: Runner> Runner for HostNamespace<R> {
    async fn output(&self, cmd: &Cmd) -> Result<Output> {
        self.inner.output(&cmd.wrapped(NSENTER_PREFIX)).await
    }

    /// The host's mount table: PID 1's (this process shares the host's PID namespace).
    fn mount_table(&self) -> std::io::Result<String> {
        std::fs::read_to_string("/proc/1/mountinfo")
    }
}

/// A fake runner for unit tests: canned responses matched by exact argv (first match wins;
/// a response added with [`RecordingRunner::respond_once`] is used once), every call
/// recorded. A command without a response fails with [`Error::Unexpected`], so a test notices
/// any command it did not plan for.
#[derive(Debug, Clone, Default)]
pub struct RecordingRunner {
    inner: Arc<Mutex<Recording>>,
}

#[derive(Debug, Default)]
struct Recording {
    responses: VecDeque<(Vec<String>, Output, bool)>,
    prefix_responses: Vec<(Vec<String>, Output)>,
    calls: Vec<Cmd>,
    mount_table: String,
}

impl RecordingRunner {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recording> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What [`Runner::mount_table`] returns (mountinfo lines).
    pub fn set_mount_table(&self, mountinfo: impl Into<String>) -> &Self {
        self.lock().mount_table = mountinfo.into();
        self
    }

    /// Answer every call with exactly this argv with `output`.
    pub fn respond(&self, argv: &[&str], output: Output) -> &Self {
        self.lock().responses.push_back((
            argv.iter().map(|s| s.to_string()).collect(),
            output,
            false,
        ));
        self
    }

    /// Answer the next call with exactly this argv with `output`, then forget the answer.
    pub fn respond_once(&self, argv: &[&str], output: Output) -> &Self {
        self.lock().responses.push_back((
            argv.iter().map(|s| s.to_string()).collect(),
            output,
            true,
        ));
        self
    }

    /// Answer every call whose argv starts with `prefix` with `output` (exact matches win).
    pub fn respond_prefix(&self, prefix: &[&str], output: Output) -> &Self {
        self.lock()
            .prefix_responses
            .push((prefix.iter().map(|s| s.to_string()).collect(), output));
        self
    }

    /// Every command run so far, in order.
    pub fn calls(&self) -> Vec<Cmd> {
        self.lock().calls.clone()
    }

    /// The argv of every command run so far, each joined by spaces.
    pub fn command_lines(&self) -> Vec<String> {
        self.lock().calls.iter().map(Cmd::display).collect()
    }
}

#[async_trait]
impl Runner for RecordingRunner {
    /// The table set with [`RecordingRunner::set_mount_table`]; empty (nothing mounted) until
    /// then.
    fn mount_table(&self) -> std::io::Result<String> {
        Ok(self.lock().mount_table.clone())
    }

    async fn output(&self, cmd: &Cmd) -> Result<Output> {
        let argv = cmd.argv();
        let mut rec = self.lock();
        rec.calls.push(cmd.clone());
        if let Some(i) = rec.responses.iter().position(|(a, _, _)| *a == argv) {
            let (_, out, once) = rec.responses[i].clone();
            if once {
                rec.responses.remove(i);
            }
            return Ok(out);
        }
        if let Some((_, out)) = rec
            .prefix_responses
            .iter()
            .filter(|(p, _)| argv.starts_with(p))
            .max_by_key(|(p, _)| p.len())
        {
            return Ok(out.clone());
        }
        Err(Error::Unexpected {
            command: cmd.display(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_argv_without_a_shell() {
        let out = TokioRunner
            .run(&Cmd::new("echo").args(["a b", "$HOME", ";", "c"]))
            .await
            .unwrap();
        assert_eq!(out.stdout, "a b $HOME ; c\n");
    }

    #[tokio::test]
    async fn nonzero_exit_is_failed_with_stderr() {
        let err = TokioRunner
            .run(&Cmd::new("ls").arg("/definitely/not/here"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Failed { code: Some(c), .. } if c != 0));
        assert!(err.stderr().contains("/definitely/not/here"), "{err}");
        // output() does not treat the exit code as an error
        let out = TokioRunner
            .output(&Cmd::new("ls").arg("/definitely/not/here"))
            .await
            .unwrap();
        assert!(!out.success());
    }

    #[tokio::test]
    async fn missing_program_is_a_spawn_error() {
        let err = TokioRunner
            .run(&Cmd::new("no-such-tool-hwameistor"))
            .await
            .unwrap_err();
        assert!(err.is_not_found(), "{err}");
    }

    #[tokio::test]
    async fn timeout_kills_the_child() {
        let started = std::time::Instant::now();
        let err = TokioRunner
            .run(
                &Cmd::new("sleep")
                    .arg("30")
                    .timeout(Duration::from_millis(200)),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn stdin_is_fed_and_hidden_from_debug() {
        let cmd = Cmd::new("cat").stdin(b"secret-key".to_vec());
        assert!(!format!("{cmd:?}").contains("secret-key"));
        let out = TokioRunner.run(&cmd).await.unwrap();
        assert_eq!(out.stdout, "secret-key");
    }

    #[tokio::test]
    async fn host_namespace_prefixes_nsenter() {
        let fake = RecordingRunner::new();
        fake.respond_prefix(&["nsenter"], Output::ok(""));
        let host = HostNamespace::new(fake.clone());
        host.run(&Cmd::new("vgs").arg("--reportformat").arg("json"))
            .await
            .unwrap();
        assert_eq!(
            fake.command_lines(),
            vec![
                "nsenter --mount=/proc/1/ns/mnt --ipc=/proc/1/ns/ipc --net=/proc/1/ns/net \
                 --uts=/proc/1/ns/uts -- vgs --reportformat json"
            ]
        );
    }

    #[tokio::test]
    async fn recording_runner_answers_and_records() {
        let fake = RecordingRunner::new();
        fake.respond(&["lvs"], Output::ok("x"))
            .respond_once(&["vgs"], Output::failed(5, "boom"));
        assert_eq!(fake.run(&Cmd::new("lvs")).await.unwrap().stdout, "x");
        let err = fake.run(&Cmd::new("vgs")).await.unwrap_err();
        assert_eq!(err.exit_code(), Some(5));
        // the one-shot answer is gone now
        assert!(matches!(
            fake.run(&Cmd::new("vgs")).await.unwrap_err(),
            Error::Unexpected { .. }
        ));
        assert_eq!(fake.command_lines(), vec!["lvs", "vgs", "vgs"]);
    }
}
