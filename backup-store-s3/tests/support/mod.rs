//! Test support shared by the S3 suites: [`Proxy`], a loopback HTTP proxy
//! in front of the test S3 server that can strip the conditional-write
//! headers (`If-None-Match`, `If-Match`), reproducing a server that ignores
//! them (Garage, issue #11), and counts the requests it forwards.
//!
//! SigV4 signs every header the client sends, `If-None-Match` included, so
//! a proxy that drops a header must sign the request again: the proxy
//! knows the test server's secret and re-signs each request for the
//! upstream host with the client's own date, scope and payload hash. What
//! reaches the server is exactly what a client that never sent the header
//! would have sent, and what comes back is the server's answer, unchanged.
//!
//! Also [`SerializedCreates`], for checks that race create-only puts on
//! the local `s3s-fs`.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use backup_core::{
    Secret, Store, key::Key, store::GetResult, store::ObjectMeta, store::PutMode,
    store::PutOptions, store::Upload,
};
use backup_store_s3::{S3Store, S3TestServer};
use bytes::Bytes;
use futures::stream::BoxStream;
use sha2::{Digest, Sha256};

/// A running proxy; stopped when dropped.
#[derive(Debug)]
pub struct Proxy {
    endpoint: String,
    forwarded: Arc<AtomicUsize>,
    stripped: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

struct Forward {
    client: reqwest::Client,
    upstream: url::Url,
    secret: Secret,
    strip: bool,
    forwarded: Arc<AtomicUsize>,
    stripped: Arc<AtomicUsize>,
}

impl Proxy {
    /// A proxy to `server` that drops `If-None-Match` and `If-Match` from
    /// every request: a server that ignores conditional writes.
    pub async fn stripping(server: &S3TestServer) -> Proxy {
        Proxy::start(server, true).await
    }

    /// A proxy to `server` that changes nothing (to count requests).
    pub async fn passing(server: &S3TestServer) -> Proxy {
        Proxy::start(server, false).await
    }

    async fn start(server: &S3TestServer, strip: bool) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let forwarded = Arc::new(AtomicUsize::new(0));
        let stripped = Arc::new(AtomicUsize::new(0));
        let state = Arc::new(Forward {
            client: reqwest::Client::new(),
            upstream: url::Url::parse(server.endpoint()).unwrap(),
            secret: server.secret_access_key().clone(),
            strip,
            forwarded: Arc::clone(&forwarded),
            stripped: Arc::clone(&stripped),
        });
        let app = axum::Router::new().fallback(forward).with_state(state);
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Proxy {
            endpoint,
            forwarded,
            stripped,
            task,
        }
    }

    /// Where clients connect.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Requests forwarded so far.
    pub fn forwarded(&self) -> usize {
        self.forwarded.load(Ordering::SeqCst)
    }

    /// Requests that had a conditional header removed.
    pub fn stripped(&self) -> usize {
        self.stripped.load(Ordering::SeqCst)
    }

    /// A builder for a store on `server` that talks to it through this
    /// proxy, under a fresh random prefix.
    pub fn store_builder(&self, server: &S3TestServer) -> backup_store_s3::S3StoreBuilder {
        server.store_builder().endpoint(&self.endpoint)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(State(fwd): State<Arc<Forward>>, request: Request) -> Response {
    match fwd.forward(request).await {
        Ok(response) => response,
        Err(e) => (StatusCode::BAD_GATEWAY, format!("proxy: {e}")).into_response(),
    }
}

/// Headers that belong to one connection, not to the request.
const HOP_BY_HOP: [&str; 4] = ["connection", "transfer-encoding", "keep-alive", "host"];

impl Forward {
    async fn forward(&self, request: Request) -> Result<Response, String> {
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX)
            .await
            .map_err(|e| e.to_string())?;
        let mut headers = parts.headers.clone();
        if self.strip {
            let had =
                headers.remove("if-none-match").is_some() | headers.remove("if-match").is_some();
            if had {
                self.stripped.fetch_add(1, Ordering::SeqCst);
            }
        }
        let host = self.upstream.authority().to_string();
        let path = parts.uri.path();
        let query = parts.uri.query().unwrap_or("");
        resign(
            &mut headers,
            parts.method.as_str(),
            path,
            query,
            &host,
            &self.secret,
        )?;
        let mut url = self.upstream.clone();
        url.set_path(path);
        url.set_query(parts.uri.query());
        let mut upstream = self
            .client
            .request(parts.method.clone(), url.as_str())
            .body(body);
        for (name, value) in &headers {
            if !HOP_BY_HOP.contains(&name.as_str()) && name != "content-length" {
                upstream = upstream.header(name, value);
            }
        }
        self.forwarded.fetch_add(1, Ordering::SeqCst);
        let answer = upstream.send().await.map_err(|e| e.to_string())?;
        let status = answer.status();
        let mut response = Response::builder().status(status.as_u16());
        for (name, value) in answer.headers() {
            if !HOP_BY_HOP.contains(&name.as_str()) {
                response = response.header(name, value);
            }
        }
        let bytes = answer.bytes().await.map_err(|e| e.to_string())?;
        response.body(Body::from(bytes)).map_err(|e| e.to_string())
    }
}

/// Signs the request again (AWS Signature Version 4) for `host`, with the
/// signed headers of the original `Authorization` that are still present.
fn resign(
    headers: &mut HeaderMap,
    method: &str,
    path: &str,
    query: &str,
    host: &str,
    secret: &Secret,
) -> Result<(), String> {
    let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Ok(()); // anonymous: nothing to sign
    };
    let field = |name: &str| {
        auth.split([' ', ','])
            .find_map(|part| part.trim().strip_prefix(name))
            .map(str::to_string)
            .ok_or_else(|| format!("no {name} in {auth}"))
    };
    let credential = field("Credential=")?;
    let signed = field("SignedHeaders=")?;
    let scope: Vec<&str> = credential.splitn(2, '/').collect();
    let (key_id, scope) = (scope[0], scope[1]);
    let scope_parts: Vec<&str> = scope.split('/').collect();
    let (date, region, service) = (scope_parts[0], scope_parts[1], scope_parts[2]);
    headers.insert(
        "host",
        HeaderValue::from_str(host).map_err(|e| e.to_string())?,
    );
    let signed: Vec<&str> = signed
        .split(';')
        .filter(|name| headers.contains_key(*name))
        .collect();
    let mut canonical_headers = String::new();
    for name in &signed {
        let values: Vec<String> = headers
            .get_all(*name)
            .iter()
            .map(|v| {
                v.to_str()
                    .unwrap_or_default()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let mut pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (aws_encode(&k), aws_encode(&v)))
        .collect();
    pairs.sort();
    let canonical_query = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| format!("no {name} header"))
    };
    let payload = header("x-amz-content-sha256")?;
    let amz_date = header("x-amz-date")?;
    let signed_list = signed.join(";");
    let canonical = format!(
        "{method}\n{path}\n{canonical_query}\n{canonical_headers}\n{signed_list}\n{payload}"
    );
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mut key = hmac(
        format!("AWS4{}", secret.expose()).as_bytes(),
        date.as_bytes(),
    );
    for part in [region, service, "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let signature = hex::encode(hmac(&key, to_sign.as_bytes()));
    let value = format!(
        "AWS4-HMAC-SHA256 Credential={key_id}/{scope}, SignedHeaders={signed_list}, Signature={signature}"
    );
    headers.insert(
        "authorization",
        HeaderValue::from_str(&value).map_err(|e| e.to_string())?,
    );
    Ok(())
}

/// SigV4's URI encoding: everything but `A-Za-z0-9-_.~`, as `%XX`.
fn aws_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// HMAC-SHA256 (RFC 2104).
fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    const BLOCK: usize = 64;
    let mut k = if key.len() > BLOCK {
        Sha256::digest(key).to_vec()
    } else {
        key.to_vec()
    };
    k.resize(BLOCK, 0);
    let pad = |byte: u8| k.iter().map(|x| x ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(data)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// `s3s-fs` checks `If-None-Match: *` and then writes, without a lock:
/// concurrent create-only PUTs of one key can all succeed there (AWS S3,
/// MinIO and R2 decide atomically). Against the local `s3s-fs` only, the
/// suite's racing-creators check therefore runs through this wrapper,
/// which serializes create-only puts in the test process so the check
/// exercises `S3Store`'s mapping (one 200, then 412 → `AlreadyExists`)
/// rather than the test server's race window. Against a server named by
/// `BACKUP_TEST_S3_ENDPOINT`, the suite runs on the bare store.
#[derive(Debug)]
pub struct SerializedCreates {
    inner: S3Store,
    creates: tokio::sync::Mutex<()>,
}

impl std::fmt::Display for SerializedCreates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

#[async_trait]
impl Store for SerializedCreates {
    async fn put(
        &self,
        key: &Key,
        data: Bytes,
        opts: PutOptions,
    ) -> backup_core::Result<ObjectMeta> {
        let _serialized = match opts.mode {
            PutMode::Create => Some(self.creates.lock().await),
            _ => None,
        };
        self.inner.put(key, data, opts).await
    }
    async fn put_stream(&self, key: &Key) -> backup_core::Result<Box<dyn Upload>> {
        self.inner.put_stream(key).await
    }
    async fn get(&self, key: &Key) -> backup_core::Result<GetResult> {
        self.inner.get(key).await
    }
    async fn get_range(
        &self,
        key: &Key,
        range: std::ops::Range<u64>,
    ) -> backup_core::Result<Bytes> {
        self.inner.get_range(key, range).await
    }
    async fn head(&self, key: &Key) -> backup_core::Result<ObjectMeta> {
        self.inner.head(key).await
    }
    fn list(&self, prefix: Option<&Key>) -> BoxStream<'static, backup_core::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn delete(&self, key: &Key) -> backup_core::Result<()> {
        self.inner.delete(key).await
    }
    async fn delete_many(&self, keys: &[Key]) -> backup_core::Result<()> {
        self.inner.delete_many(keys).await
    }
}

/// The store the conformance suite runs on (see [`SerializedCreates`]).
pub fn conformance_store(server: &S3TestServer, store: S3Store) -> Arc<dyn Store> {
    if server.is_local() {
        Arc::new(SerializedCreates {
            inner: store,
            creates: tokio::sync::Mutex::new(()),
        })
    } else {
        Arc::new(store)
    }
}

#[test]
fn hmac_matches_rfc_4231() {
    // Test case 2 of RFC 4231.
    assert_eq!(
        hex::encode(hmac(b"Jefe", b"what do ya want for nothing?")),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}
