//! A minimal HTTP/1.1 endpoint for Prometheus: `GET /metrics` and `GET /health`, nothing else.
//!
//! Hand-rolled on purpose: two fixed paths answered with `Connection: close` need no web
//! framework. A request head is bounded in size ([`MAX_REQUEST`]) and time
//! ([`REQUEST_TIMEOUT`]), at most [`MAX_CLIENTS`] are served at once (more are closed
//! unanswered), a body is never read. Other paths are `404`, other methods `405` (RFC 9110
//! §15.5.6, with `Allow`).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::timeout;

/// Largest request head read (request line and headers).
pub const MAX_REQUEST: usize = 8 * 1024;
/// Time a client has to send its request head and read the answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Scrapes served at once.
pub const MAX_CLIENTS: usize = 16;
/// Time a health check may take before it counts as failed.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

/// Says whether the backends answer: `Err` with the reason when they do not. Runs on the
/// blocking pool (it may query a database).
pub type HealthCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Serves `/metrics` and `/health` on `listener` until `stopped` says the server is done.
/// `serving` is asked at each health check: false (e.g. shutting down) answers 503.
pub async fn serve(
    listener: TcpListener,
    health: HealthCheck,
    serving: Arc<dyn Fn() -> bool + Send + Sync>,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(pair) => pair,
            Err(error) => {
                tracing::warn!(%error, "metrics listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            continue; // too many scrapes at once: closed unanswered
        };
        let health = Arc::clone(&health);
        let serving = Arc::clone(&serving);
        tokio::spawn(async move {
            let _ = timeout(REQUEST_TIMEOUT, answer(stream, health, serving)).await;
            drop(permit);
        });
    }
}

/// Reads a request head, up to its blank line; `None` if too long or cut off.
async fn read_head(stream: &mut TcpStream) -> io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        head.extend_from_slice(&buf[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            return Ok(Some(head));
        }
        if head.len() > MAX_REQUEST {
            return Ok(None);
        }
    }
}

/// What a request head asks for: the response's status, content type and body.
fn route(head: &[u8], health: impl FnOnce() -> Result<(), String>) -> (u16, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.trim_end().split(' ');
    let (Some(method), Some(target), Some(version)) = (words.next(), words.next(), words.next())
    else {
        return (400, TEXT, "bad request\n".into());
    };
    if !version.starts_with("HTTP/1.") || words.next().is_some() {
        return (400, TEXT, "bad request\n".into());
    }
    // The query string is ignored (Prometheus may add none; curl users may).
    let path = target.split('?').next().unwrap_or_default();
    if path != "/metrics" && path != "/health" {
        return (404, TEXT, "not found: try /metrics or /health\n".into());
    }
    if method != "GET" && method != "HEAD" {
        return (405, TEXT, "method not allowed\n".into());
    }
    if path == "/metrics" {
        return (200, "text/plain; version=0.0.4; charset=utf-8", super::render());
    }
    match health() {
        Ok(()) => (200, TEXT, "ok\n".into()),
        Err(reason) => (503, TEXT, format!("unhealthy: {reason}\n")),
    }
}

async fn answer(
    mut stream: TcpStream,
    health: HealthCheck,
    serving: Arc<dyn Fn() -> bool + Send + Sync>,
) -> io::Result<()> {
    let Some(head) = read_head(&mut stream).await? else {
        let (status, body) = (431, "request head too large or cut off\n");
        return respond(&mut stream, status, "text/plain; charset=utf-8", body, false).await;
    };
    let head_only = head.starts_with(b"HEAD ");
    // The health check runs only if /health is asked for, and off the runtime threads.
    let needs_health = head
        .split(|&b| b == b'\n')
        .next()
        .is_some_and(|l| l.windows(b" /health".len()).any(|w| w == b" /health"));
    let checked = if needs_health {
        let check = tokio::task::spawn_blocking(move || {
            if serving() {
                health()
            } else {
                Err("shutting down".to_owned())
            }
        });
        Some(match timeout(HEALTH_TIMEOUT, check).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err("health check failed".to_owned()),
            Err(_) => Err(format!("health check took more than {HEALTH_TIMEOUT:?}")),
        })
    } else {
        None
    };
    let (status, content_type, body) =
        route(&head, || checked.unwrap_or_else(|| Err("not checked".to_owned())));
    respond(&mut stream, status, content_type, &body, head_only).await
}

async fn respond(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &str,
    head_only: bool,
) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let allow = if status == 405 { "Allow: GET, HEAD\r\n" } else { "" };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         {allow}Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    stream.write_all(&out).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn ask(addr: std::net::SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut answer = String::new();
        timeout(Duration::from_secs(10), stream.read_to_string(&mut answer))
            .await
            .unwrap()
            .unwrap();
        answer
    }

    #[tokio::test]
    async fn metrics_health_and_everything_else() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let healthy = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let flag = Arc::clone(&healthy);
        let check: HealthCheck = Arc::new(move || {
            if flag.load(std::sync::atomic::Ordering::SeqCst) {
                Ok(())
            } else {
                Err("mail base /nowhere is missing".into())
            }
        });
        tokio::spawn(serve(listener, check, Arc::new(|| true)));

        let metrics = ask(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(metrics.starts_with("HTTP/1.1 200 OK\r\n"), "{metrics}");
        assert!(metrics.contains("# TYPE pop3_logins_total counter"), "{metrics}");
        let health = ask(addr, b"GET /health HTTP/1.1\r\n\r\n").await;
        assert!(health.starts_with("HTTP/1.1 200 OK\r\n") && health.ends_with("\r\n\r\nok\n"));
        healthy.store(false, std::sync::atomic::Ordering::SeqCst);
        let health = ask(addr, b"GET /health HTTP/1.0\r\n\r\n").await;
        assert!(health.starts_with("HTTP/1.1 503 "), "{health}");
        assert!(health.ends_with("unhealthy: mail base /nowhere is missing\n"), "{health}");

        let head = ask(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"), "{head}");
        assert!(ask(addr, b"GET / HTTP/1.1\r\n\r\n").await.starts_with("HTTP/1.1 404 "));
        let post = ask(addr, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").await;
        assert!(post.starts_with("HTTP/1.1 405 ") && post.contains("Allow: GET, HEAD\r\n"));
        assert!(ask(addr, b"hello\r\n\r\n").await.starts_with("HTTP/1.1 400 "));
        let huge = [b"GET /metrics HTTP/1.1\r\nX: ".as_slice(), &[b'a'; MAX_REQUEST + 10]].concat();
        assert!(ask(addr, &huge).await.starts_with("HTTP/1.1 431 "));
    }

    #[tokio::test]
    async fn a_silent_client_is_dropped_after_the_request_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, Arc::new(|| Ok(())), Arc::new(|| true)));
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"GET /metr").await.unwrap();
        let mut buf = Vec::new();
        let read = timeout(REQUEST_TIMEOUT * 2, stream.read_to_end(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0))), "closed without an answer: {read:?} {buf:?}");
    }
}
