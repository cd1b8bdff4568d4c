//! The HTTP gateway (`gossipd --http-gateway`): a reverse proxy on every agent that routes each
//! request by its host and path to a ready replica of the component whose `gateway` (or
//! `ingress`) route takes it (see [`super::table::ServiceTable::route`]), this node's replicas
//! first, adding the standard forwarded headers. hyper does the HTTP; the routing is pure.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HOST, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::table::{Backend, ServiceTable};

type Body = BoxBody<Bytes, hyper::Error>;

/// How long connecting to one replica may take before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves the gateway on `address` until the table's sender goes away.
pub async fn serve(
    address: SocketAddr,
    table: watch::Receiver<Arc<ServiceTable>>,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(address).await?;
    tracing::info!(%address, "HTTP gateway up");
    let turn = Arc::new(AtomicUsize::new(0));
    loop {
        let (stream, client) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("gateway accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (table, turn) = (table.clone(), turn.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let (table, turn) = (table.clone(), turn.clone());
                async move { Ok::<_, Infallible>(proxy(request, client, &table, &turn).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%client, "gateway connection: {e}");
            }
        });
    }
}

fn plain(status: StatusCode, text: String) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from(text + "\n"))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response
}

async fn proxy(
    mut request: Request<Incoming>,
    client: SocketAddr,
    table: &watch::Receiver<Arc<ServiceTable>>,
    turn: &AtomicUsize,
) -> Response<Body> {
    let host = request
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().host())
        .unwrap_or_default()
        .to_string();
    let path = request.uri().path().to_string();
    let table = table.borrow().clone();
    let Some(route) = table.route(&host, &path) else {
        return plain(
            StatusCode::NOT_FOUND,
            format!("no gateway route for {host}{path}"),
        );
    };
    let mut candidates: Vec<Backend> = route.backends.candidates().to_vec();
    if candidates.is_empty() {
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{}/{} has no ready replica", route.app, route.component),
        );
    }
    let first = turn.fetch_add(1, Ordering::Relaxed) % candidates.len();
    candidates.rotate_left(first);
    add_forwarded(&mut request, client, &host);
    // The request goes out in origin form: the path and query only.
    if let Some(origin) = request.uri().path_and_query().cloned() {
        *request.uri_mut() = origin.as_str().parse().expect("a path is a URI");
    }
    for backend in &candidates {
        let stream = match tokio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect(backend.address),
        )
        .await
        {
            Ok(Ok(stream)) => stream,
            _ => continue,
        };
        let _ = stream.set_nodelay(true);
        let (mut sender, connection) =
            match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
                Ok(pair) => pair,
                Err(_) => continue,
            };
        tokio::spawn(async move {
            let _ = connection.await;
        });
        return match sender.send_request(request).await {
            Ok(response) => response.map(BodyExt::boxed),
            Err(e) => plain(
                StatusCode::BAD_GATEWAY,
                format!("{} did not answer: {e}", backend.replica),
            ),
        };
    }
    plain(
        StatusCode::BAD_GATEWAY,
        format!(
            "no replica of {}/{} accepted a connection",
            route.app, route.component
        ),
    )
}

/// `X-Forwarded-For` (appended to), `X-Forwarded-Host`, `X-Forwarded-Proto` and RFC 7239's
/// `Forwarded`, as ingress controllers set them.
fn add_forwarded(request: &mut Request<Incoming>, client: SocketAddr, host: &str) {
    let headers = request.headers_mut();
    let ip = client.ip().to_string();
    let chain = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(earlier) => format!("{earlier}, {ip}"),
        None => ip.clone(),
    };
    let node = if client.is_ipv6() {
        format!("\"[{ip}]\"")
    } else {
        ip
    };
    let forwarded = format!("for={node};host={host};proto=http");
    let forwarded = match headers.get("forwarded").and_then(|v| v.to_str().ok()) {
        Some(earlier) => format!("{earlier}, {forwarded}"),
        None => forwarded,
    };
    for (name, value) in [
        ("x-forwarded-for", chain),
        ("x-forwarded-host", host.to_string()),
        ("x-forwarded-proto", "http".to_string()),
        ("forwarded", forwarded),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator::WorkloadId;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::services::table::{Backends, Route};

    /// A replica that answers every request with the request's head as its body.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n")
                        && stream.read(&mut byte).await.unwrap_or(0) == 1
                    {
                        head.push(byte[0]);
                    }
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        head.len()
                    );
                    let _ = stream.write_all(reply.as_bytes()).await;
                    let _ = stream.write_all(&head).await;
                });
            }
        });
        address
    }

    async fn ask(gateway: SocketAddr, host: &str, path: &str) -> (String, String) {
        let mut stream = TcpStream::connect(gateway).await.unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nX-Forwarded-For: 10.9.9.9\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        (head.lines().next().unwrap().to_string(), body.to_string())
    }

    #[tokio::test]
    async fn requests_go_by_host_and_path_with_forwarded_headers() {
        let replica = echo().await;
        let route = Route {
            app: "shop".into(),
            component: "api".into(),
            domain: Some("shop.example.com".into()),
            prefix: "/api".into(),
            port: replica.port(),
            backends: Backends {
                local: vec![Backend {
                    replica: WorkloadId {
                        app: "shop".into(),
                        component: "api".into(),
                        replica: 0,
                    },
                    node: "a".into(),
                    address: replica,
                }],
                remote: vec![],
            },
        };
        let mut empty = route.clone();
        empty.prefix = "/down".into();
        empty.backends = Backends::default();
        let table = ServiceTable {
            services: vec![],
            routes: vec![route, empty],
        };
        let (_sender, receiver) = watch::channel(Arc::new(table));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let gateway: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        tokio::spawn(serve(gateway, receiver));
        tokio::time::sleep(Duration::from_millis(100)).await;

        let (status, head) = ask(gateway, "shop.example.com", "/api/items?page=2").await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        let head = head.to_ascii_lowercase();
        assert!(head.starts_with("get /api/items?page=2 http/1.1"), "{head}");
        assert!(head.contains("host: shop.example.com"), "{head}");
        assert!(
            head.contains("x-forwarded-for: 10.9.9.9, 127.0.0.1"),
            "{head}"
        );
        assert!(
            head.contains("x-forwarded-host: shop.example.com"),
            "{head}"
        );
        assert!(head.contains("x-forwarded-proto: http"), "{head}");
        assert!(
            head.contains("forwarded: for=127.0.0.1;host=shop.example.com;proto=http"),
            "{head}"
        );

        let (status, _) = ask(gateway, "other.example.com", "/api/").await;
        assert_eq!(status, "HTTP/1.1 404 Not Found");
        let (status, body) = ask(gateway, "shop.example.com", "/down").await;
        assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
        assert!(body.contains("shop/api has no ready replica"), "{body}");
    }
}
