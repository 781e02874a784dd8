//! Running host commands from synchronous code, and what this process may do.

use std::future::Future;

use hwameistor_exec::{Cmd, Output, Runner, TokioRunner};

/// Run `fut` to completion on a private current-thread runtime in a thread of its own.
///
/// Drop guards cannot `.await`, and a test's Drop may run inside or outside a tokio runtime
/// (blocking inside one panics); a separate thread with its own runtime works in both. Returns
/// `None` if the runtime could not be built or the future panicked.
pub fn block_on<F>(fut: F) -> Option<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        Some(rt.block_on(fut))
    })
    .join()
    .ok()
    .flatten()
}

/// Run `cmd` through the runner from synchronous code ([`block_on`]); exit code 0 required.
pub fn run_blocking(cmd: Cmd) -> hwameistor_exec::Result<Output> {
    let display = cmd.display();
    block_on(async move { TokioRunner.run(&cmd).await }).unwrap_or_else(|| {
        Err(hwameistor_exec::Error::Io {
            command: display,
            source: std::io::Error::other("no runtime for a blocking run"),
        })
    })
}

/// Run `cmd` through the runner and return its stdout (exit code 0 required).
pub async fn run(cmd: Cmd) -> anyhow::Result<String> {
    Ok(TokioRunner.run(&cmd).await?.stdout)
}

/// Linux capability number of `CAP_SYS_RESOURCE` (ext4 online resize needs it).
pub const CAP_SYS_RESOURCE: u32 = 24;

/// Whether this process has capability `bit` in its effective set (`CapEff` of
/// `/proc/self/status`). Unreadable or unparsable means no.
pub fn has_cap(bit: u32) -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:").map(|v| v.trim().to_owned()))
        })
        .and_then(|hex| u64::from_str_radix(&hex, 16).ok())
        .is_some_and(|caps| caps & (1 << bit) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_on_works_outside_a_runtime() {
        assert_eq!(block_on(async { 40 + 2 }), Some(42));
        let out = run_blocking(Cmd::new("echo").arg("hi")).unwrap();
        assert_eq!(out.stdout.trim(), "hi");
        assert!(run_blocking(Cmd::new("false")).is_err());
    }

    #[tokio::test]
    async fn block_on_works_inside_a_runtime() {
        assert_eq!(block_on(async { 7 }), Some(7));
        assert_eq!(run(Cmd::new("echo").arg("x")).await.unwrap().trim(), "x");
    }
}
