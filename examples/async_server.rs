//! A small tokio HTTP service whose requests run a crash-prone function in
//! a multiproc pool, each with its own time limit.
//!
//! ```sh
//! cargo run --release --example async_server            # serves on 127.0.0.1:3000
//! curl 127.0.0.1:3000/work/12                           # 200: 144
//! curl 127.0.0.1:3000/work/7                            # 500: the worker died (WorkerLost)
//! curl 127.0.0.1:3000/work/5                            # 500: past its time limit (TimeLimit)
//! cargo run --release --example async_server -- --demo  # serves, sends itself requests, exits
//! ```
//!
//! `work(n)` stands for a native library that is not safe to call in the
//! server's own process: it aborts on multiples of 7 and hangs on
//! multiples of 5. A request whose worker aborts or hangs answers 500 with
//! the error; the pool replaces the worker, and the other requests, in
//! flight at the same time, go on. The tokio runtime never blocks: each
//! request `await`s its `AsyncResult`, which the pool's background thread
//! completes.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use multiproc::{ErrorKind, Pool};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The crash-prone function: aborts the worker on multiples of 7, hangs
/// on multiples of 5, squares anything else after a little work.
fn work(n: u64) -> u64 {
    if n.is_multiple_of(7) {
        std::process::abort();
    }
    if n.is_multiple_of(5) {
        loop {
            std::thread::park();
        }
    }
    std::thread::sleep(Duration::from_millis(20));
    n * n
}

/// Each request's own time limit.
const LIMIT: Duration = Duration::from_millis(300);

async fn handle(State(pool): State<Arc<Pool>>, Path(n): Path<u64>) -> (StatusCode, String) {
    let submitted = pool.task_timeout(LIMIT).apply_async(work, n);
    let outcome = match submitted {
        Ok(result) => result.await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(v) => (StatusCode::OK, format!("{v}\n")),
        Err(e) if matches!(e.kind(), ErrorKind::WorkerLost | ErrorKind::TimeLimit) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{:?}: {e}\n", e.kind()),
        ),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
    }
}

/// One plain HTTP/1.1 GET, for the demo: the status line and the body.
async fn fetch(addr: std::net::SocketAddr, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr).await?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).await?;
    let status = reply.lines().next().unwrap_or("").to_string();
    let body = reply
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or("")
        .trim()
        .to_string();
    Ok(format!("{status} | {body}"))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init(); // first line of main, before the runtime's threads
    let demo = std::env::args().any(|a| a == "--demo");
    let pool = Arc::new(Pool::new(2)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let app = Router::new()
            .route("/work/{n}", get(handle))
            .with_state(pool.clone());
        let addr = if demo {
            "127.0.0.1:0"
        } else {
            "127.0.0.1:3000"
        };
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        println!("serving on http://{addr}/work/N");
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        if !demo {
            server.await??;
            return Ok(());
        }
        // Twelve requests at once: two kill their worker, two hang past
        // their limit, the rest answer while that happens.
        let requests: Vec<_> = (1..=12u64)
            .map(|n| tokio::spawn(async move { (n, fetch(addr, &format!("/work/{n}")).await) }))
            .collect();
        for r in requests {
            let (n, reply) = r.await?;
            println!("  /work/{n:<2} -> {}", reply?);
        }
        let stats = pool.stats();
        println!(
            "the pool replaced {} workers and goes on",
            stats.worker_restarts
        );
        server.abort();
        Ok::<(), Box<dyn std::error::Error>>(())
    })?;
    Ok(())
}
