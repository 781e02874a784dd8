//! Polling until a condition holds.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::bail;

/// Poll `f` every 50 ms until it returns `Some`, or panic after `secs` seconds naming
/// `what`.
pub async fn wait_for<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {secs}s waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Poll `f` every 20 ms until it returns `Some`; returns the value and how long it took,
/// or an error naming `what` after `timeout`. For tests that report or bound a latency.
pub async fn wait_timed<T, F, Fut>(
    what: &str,
    timeout: Duration,
    mut f: F,
) -> anyhow::Result<(T, Duration)>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if let Some(v) = f().await {
            return Ok((v, t0.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("timed out after {timeout:?} waiting for {what}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn wait_for_returns_the_first_some() {
        let n = AtomicU32::new(0);
        let v = wait_for(5, "third poll", || async {
            (n.fetch_add(1, Ordering::SeqCst) == 2).then_some("done")
        })
        .await;
        assert_eq!(v, "done");
        assert_eq!(n.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    #[should_panic(expected = "timed out after 0s waiting for never")]
    async fn wait_for_panics_at_the_deadline() {
        wait_for(0, "never", || async { None::<()> }).await;
    }

    #[tokio::test]
    async fn wait_timed_reports_value_elapsed_and_timeout() {
        let (v, took) = wait_timed("now", Duration::from_secs(1), || async { Some(3) })
            .await
            .unwrap();
        assert_eq!(v, 3);
        assert!(took < Duration::from_secs(1));
        let err = wait_timed("never", Duration::from_millis(60), || async { None::<()> })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("waiting for never"), "{err}");
    }
}
