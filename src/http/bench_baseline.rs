//! The plain HTTP servers the benchmarks stand beside: the transfer the
//! join benchmark (`src/bench/join.rs`) is measured against, with the same
//! server and client libraries as the peer protocol (tide, surf), and the
//! PUT server of the write benchmark (`src/bench/put.rs`). Over loopback,
//! they move bytes and do nothing else with them.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tide::{Body, Request, Response};

/// Moves `total` bytes from a tide server to a surf client, one POST after
/// another, each answered with `chunk` bytes (the shape of a peer exchange:
/// a small request, a batch in the reply). Returns the time the client
/// took, from its first request to its last byte.
pub fn transfer(total: u64, chunk: usize) -> Result<Duration, String> {
    let chunk = chunk.max(1);
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))?;
    let addr = format!("127.0.0.1:{port}");
    let blob: Arc<Vec<u8>> = Arc::new((0..chunk).map(|i| (i % 251) as u8).collect());
    let mut app = tide::with_state(blob);
    app.at("/blob")
        .post(|mut req: Request<Arc<Vec<u8>>>| async move {
            let _ = req.body_bytes().await?;
            let mut res = Response::new(200);
            res.set_body(Body::from_bytes(req.state().to_vec()));
            Ok(res)
        });
    let server = async_std::task::spawn(app.listen(addr.clone()));
    let url = format!("http://{addr}/blob");
    let result = async_std::task::block_on(async {
        // Wait for the listener.
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(&addr).is_err() {
            if Instant::now() > until {
                return Err(format!("the baseline server did not listen on {addr}"));
            }
            async_std::task::sleep(Duration::from_millis(10)).await;
        }
        let request = vec![0u8; 64];
        let started = Instant::now();
        let mut received = 0u64;
        while received < total {
            let mut res = super::client::client()
                .post(&url)
                .content_type("application/octet-stream")
                .body_bytes(request.clone())
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            let body = res.body_bytes().await.map_err(|e| format!("{url}: {e}"))?;
            if body.is_empty() {
                return Err(format!("{url}: an empty answer"));
            }
            received += body.len() as u64;
        }
        Ok(started.elapsed())
    });
    async_std::task::block_on(server.cancel());
    result
}

/// A plain tide server answering `PUT /v1/kv/{key}` as a node does (200
/// and a small JSON body), storing nothing: served by async-h1 on sockets
/// with `TCP_NODELAY`, as the node's listener serves. Runs until the
/// process ends; returns its address.
pub fn put_server() -> Result<SocketAddr, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("the baseline server's address: {e}"))?;
    let mut app = tide::new();
    app.at("/v1/kv/:key")
        .put(|mut req: Request<()>| async move {
            let _ = req.body_bytes().await?;
            let key = req.param("key")?.to_string();
            let mut res = Response::new(200);
            res.set_body(serde_json::json!({ "key": key, "version": "0.0.0", "deleted": false }));
            Ok(res)
        });
    let listener = async_std::net::TcpListener::from(listener);
    async_std::task::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // Out of descriptors, mostly: wait for some to be freed.
                async_std::task::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let _ = stream.set_nodelay(true);
            let app = app.clone();
            async_std::task::spawn(async move {
                let _ = async_h1::accept(stream, |req| app.respond(req)).await;
            });
        }
    });
    Ok(addr)
}
