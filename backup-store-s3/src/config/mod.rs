//! [`S3StoreBuilder`]: where the bucket is, how to reach it, who we are,
//! and how uploads are cut into parts.

use std::sync::Arc;
use std::time::Duration;

use backup_core::{Error, Result, Secret, key::Key};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, S3ConditionalPut};
use object_store::{BackoffConfig, ClientOptions, RetryConfig};

use crate::error::ErrorContext;
use crate::inner::{ConditionalPut, Inner};
use crate::parts::{DEFAULT_CONCURRENCY, DEFAULT_MAX_PART_SIZE, DEFAULT_PART_SIZE, PartPlan};
use crate::store::S3Store;

impl S3Store {
    /// Starts configuring a store over `bucket`. The name is checked by
    /// [`S3StoreBuilder::build`] against the S3 naming rules for general
    /// purpose buckets: 3 to 63 characters; lowercase letters, digits, `.`
    /// and `-`; starting and ending with a letter or digit; no `..`; not an
    /// IP address; none of the prefixes (`xn--`, `sthree-`,
    /// `amzn-s3-demo-`) and suffixes (`-s3alias`, `--ol-s3`, `.mrap`,
    /// `--x-s3`, `--table-s3`) AWS reserves. No leniency: MinIO creates
    /// buckets under the same rules and Cloudflare R2's are stricter;
    /// legacy names (uppercase, `_`) are refused.
    pub fn builder(bucket: impl Into<String>) -> S3StoreBuilder {
        S3StoreBuilder::new(bucket.into())
    }

    /// Starts configuring a store from `s3://bucket` or
    /// `s3://bucket/prefix`, refusing at once a bucket name or prefix that
    /// [`S3StoreBuilder::build`] would refuse (`s3://../other` names no
    /// bucket, it is not a way into bucket `other`).
    pub fn builder_from_url(url: &str) -> Result<S3StoreBuilder> {
        S3StoreBuilder::from_url(url)
    }
}

/// Configuration of an [`S3Store`]; see [`S3Store::builder`].
///
/// Every setting has a default except the bucket and the credentials,
/// which come from [`S3StoreBuilder::credentials`] or, with
/// [`S3StoreBuilder::from_env`], from the standard `AWS_*` variables
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
/// `AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, and the web-identity
/// and container credential variables). Settings made on the builder win
/// over the environment.
///
/// `Debug` shows the secret key and session token as `***`.
#[derive(Debug, Clone)]
pub struct S3StoreBuilder {
    bucket: String,
    prefix: Option<String>,
    region: Option<String>,
    endpoint: Option<String>,
    path_style: Option<bool>,
    allow_http: Option<bool>,
    access_key_id: Option<String>,
    secret_access_key: Option<Secret>,
    session_token: Option<Secret>,
    from_env: bool,
    max_retries: usize,
    retry_timeout: Duration,
    timeout: Duration,
    connect_timeout: Duration,
    part_size: usize,
    max_part_size: usize,
    concurrency: usize,
    conditional_put: bool,
}

impl S3StoreBuilder {
    pub(crate) fn new(bucket: String) -> Self {
        S3StoreBuilder {
            bucket,
            prefix: None,
            region: None,
            endpoint: None,
            path_style: None,
            allow_http: None,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            from_env: false,
            max_retries: 10,
            retry_timeout: Duration::from_secs(180),
            timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(10),
            part_size: DEFAULT_PART_SIZE,
            max_part_size: DEFAULT_MAX_PART_SIZE,
            concurrency: DEFAULT_CONCURRENCY,
            conditional_put: true,
        }
    }

    /// Parses `s3://bucket` or `s3://bucket/some/prefix`, validating the
    /// bucket name and the prefix as [`S3StoreBuilder::build`] does.
    pub(crate) fn from_url(url: &str) -> Result<Self> {
        let bad = |why: &str| Error::Config(format!("invalid S3 URL {url:?}: {why}"));
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| bad("expected s3://bucket/prefix"))?;
        let (bucket, prefix) = match rest.split_once('/') {
            Some((bucket, prefix)) => (bucket, prefix),
            None => (rest, ""),
        };
        if bucket.is_empty() {
            return Err(bad("the bucket name is missing"));
        }
        validate_bucket(bucket)?;
        validate_prefix(prefix)?;
        let builder = S3StoreBuilder::new(bucket.to_string());
        Ok(if prefix.is_empty() {
            builder
        } else {
            builder.prefix(prefix)
        })
    }

    /// `s3://bucket` or `s3://bucket/prefix` as configured, for messages.
    pub fn location(&self) -> String {
        match &self.prefix {
            Some(prefix) => format!("s3://{}/{}", self.bucket, prefix.trim_end_matches('/')),
            None => format!("s3://{}", self.bucket),
        }
    }

    /// Keeps every object under `prefix/` in the bucket (several stores can
    /// share a bucket). Checked when the store is built: `/`-separated
    /// segments valid as a [`Key`] (no empty, `.` or `..` segment, no
    /// leading `/`); one trailing `/` is ignored.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// The bucket's region (`us-east-1` when neither set here nor in the
    /// environment). S3-compatible servers usually accept any region.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// An S3-compatible server (`http://127.0.0.1:9000`, MinIO, R2,
    /// Supabase Storage's `/storage/v1/s3`, Garage) instead of AWS. Without
    /// it requests go to `s3.{region}.amazonaws.com`.
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Path-style requests (`{endpoint}/{bucket}/{key}`) when `true`,
    /// virtual-hosted ones (`{bucket}.{endpoint host}/{key}`) when `false`.
    /// By default: virtual-hosted on AWS, path-style with a custom endpoint
    /// (what MinIO, Supabase and most self-hosted servers expect), unless
    /// `AWS_VIRTUAL_HOSTED_STYLE_REQUEST` says otherwise under
    /// [`S3StoreBuilder::from_env`].
    pub fn path_style(mut self, path_style: bool) -> Self {
        self.path_style = Some(path_style);
        self
    }

    /// Allows plain-HTTP endpoints. By default HTTP is allowed exactly when
    /// the endpoint is an `http://` URL (or `AWS_ALLOW_HTTP` says so).
    pub fn allow_http(mut self, allow: bool) -> Self {
        self.allow_http = Some(allow);
        self
    }

    /// Static credentials. The secret is only handed to the request signer.
    pub fn credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: Secret,
    ) -> Self {
        self.access_key_id = Some(access_key_id.into());
        self.secret_access_key = Some(secret_access_key);
        self
    }

    /// A session token to go with temporary [`S3StoreBuilder::credentials`].
    pub fn session_token(mut self, token: Secret) -> Self {
        self.session_token = Some(token);
        self
    }

    /// Reads whatever is not set on the builder from the `AWS_*`
    /// environment, including credentials (static, web identity, container
    /// or instance metadata, as the AWS SDKs do).
    pub fn from_env(mut self) -> Self {
        self.from_env = true;
        self
    }

    /// How often a failed request is retried, with exponential backoff
    /// (default 10).
    pub fn max_retries(mut self, retries: usize) -> Self {
        self.max_retries = retries;
        self
    }

    /// How long after its first attempt a request is no longer retried
    /// (default 3 minutes).
    pub fn retry_timeout(mut self, timeout: Duration) -> Self {
        self.retry_timeout = timeout;
        self
    }

    /// Time limit of one HTTP request, body included (default 2 minutes;
    /// a part of 128 MiB needs about 1.1 MB/s to make it).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Time limit to open a connection (default 10 seconds).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Size of the first parts of a streamed upload (default 16 MiB, at
    /// least 5 MiB). Streams smaller than this are sent in one PUT.
    pub fn part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes;
        self
    }

    /// Ceiling of the part size, which doubles every 1,000 parts (default
    /// 128 MiB: the 10,000 parts S3 allows then hold 984 GiB). Set it to the
    /// part size for equal parts, which Cloudflare R2 requires; raise it for
    /// objects beyond a terabyte.
    pub fn max_part_size(mut self, bytes: usize) -> Self {
        self.max_part_size = bytes;
        self
    }

    /// Parts uploading at once (default 4). An upload holds at most
    /// (concurrency + 1) × the current part size in memory.
    pub fn upload_concurrency(mut self, parts: usize) -> Self {
        self.concurrency = parts;
        self
    }

    /// Whether create-only puts may use a conditional PUT (`If-None-Match:
    /// *`, default `true`). The store does not take the server's word for
    /// it: before its first create-only put it checks, once, that the
    /// server refuses a second conditional PUT of a probe object (see
    /// [`S3Store::supports_conditional_put`]). With `false` no request is
    /// made and create-only puts fail with [`Error::Unsupported`] at once.
    pub fn conditional_put(mut self, enabled: bool) -> Self {
        self.conditional_put = enabled;
        self
    }

    /// Validates the settings and builds the store. No request is made:
    /// access is checked by each streamed upload before it reads any data
    /// (see [`S3Store`]).
    ///
    /// The bucket name must follow the S3 naming rules (see
    /// [`S3Store::builder`]); a name that does not is refused rather than
    /// passed on, since in a request path it could name another bucket
    /// (`..`, `a/b`) or another host.
    pub fn build(self) -> Result<S3Store> {
        let plan = PartPlan::new(self.part_size, self.max_part_size, self.concurrency)?;
        validate_bucket(&self.bucket)?;
        let prefix = match &self.prefix {
            Some(p) => validate_prefix(p)?,
            None => None,
        };
        let mut s3 = if self.from_env {
            AmazonS3Builder::from_env()
        } else {
            AmazonS3Builder::new()
        };
        s3 = s3.with_bucket_name(&self.bucket);
        if let Some(region) = &self.region {
            s3 = s3.with_region(region);
        }
        let region = s3
            .get_config_value(&AmazonS3ConfigKey::Region)
            .unwrap_or_else(|| "us-east-1".into());
        let env = |name: &str| self.from_env.then(|| std::env::var(name).ok()).flatten();

        let endpoint = match &self.endpoint {
            Some(e) => Some(e.clone()),
            None => s3.get_config_value(&AmazonS3ConfigKey::Endpoint),
        };
        let endpoint = endpoint
            .map(|e| url::Url::parse(e.trim_end_matches('/')).map(|u| (e, u)))
            .transpose()
            .map_err(|e| Error::Config(format!("invalid S3 endpoint: {e}")))?;
        let virtual_hosted = match self.path_style {
            Some(path_style) => !path_style,
            None => match env("AWS_VIRTUAL_HOSTED_STYLE_REQUEST") {
                Some(v) => parse_bool("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", &v)?,
                None => endpoint.is_none(),
            },
        };
        let allow_http = match self.allow_http {
            Some(allow) => allow,
            None => match env("AWS_ALLOW_HTTP") {
                Some(v) => parse_bool("AWS_ALLOW_HTTP", &v)?,
                None => endpoint.as_ref().is_some_and(|(_, u)| u.scheme() == "http"),
            },
        };
        let shown_endpoint = match &endpoint {
            Some((raw, url)) => {
                if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                    return Err(Error::Config(format!(
                        "invalid S3 endpoint {raw:?}: expected http(s)://host[:port]"
                    )));
                }
                let base = raw.trim_end_matches('/').to_string();
                s3 = s3.with_endpoint(if virtual_hosted {
                    bucket_host(url, &self.bucket)
                } else {
                    base.clone()
                });
                base
            }
            None => format!("https://s3.{region}.amazonaws.com"),
        };
        s3 = s3.with_virtual_hosted_style_request(virtual_hosted);

        let mut secrets = Vec::new();
        match (&self.access_key_id, &self.secret_access_key) {
            (Some(id), Some(secret)) => {
                if id.is_empty() || secret.is_empty() {
                    return Err(Error::Config(
                        "S3 access key id and secret access key must not be empty".into(),
                    ));
                }
                s3 = s3
                    .with_access_key_id(id)
                    .with_secret_access_key(secret.expose());
                secrets.push(secret.clone());
                if let Some(token) = &self.session_token {
                    s3 = s3.with_token(token.expose());
                    secrets.push(token.clone());
                }
            }
            _ if self.from_env => {
                for key in [AmazonS3ConfigKey::SecretAccessKey, AmazonS3ConfigKey::Token] {
                    if let Some(value) = s3.get_config_value(&key) {
                        secrets.push(Secret::new(value));
                    }
                }
            }
            _ => {
                return Err(Error::Config(
                    "no S3 credentials: give an access key id and secret, or read them from the AWS_* environment".into(),
                ));
            }
        }
        if !self.conditional_put {
            s3 = s3.with_conditional_put(S3ConditionalPut::Disabled);
        }
        let retry = RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: self.max_retries,
            retry_timeout: self.retry_timeout,
        };
        s3 = s3.with_retry(retry).with_client_options(
            ClientOptions::new()
                .with_timeout(self.timeout)
                .with_connect_timeout(self.connect_timeout)
                .with_allow_http(allow_http),
        );

        let name = match &prefix {
            Some(p) => format!("s3://{}/{p}", self.bucket),
            None => format!("s3://{}", self.bucket),
        };
        let ctx = ErrorContext {
            name,
            bucket: self.bucket.clone(),
            endpoint: shown_endpoint,
            secrets,
        };
        let client = s3
            .build()
            .map_err(|e| Error::Config(ctx.redact(&format!("S3 client: {e}"))))?;
        Ok(S3Store::from_inner(Arc::new(Inner {
            client: Arc::new(client),
            prefix,
            ctx,
            region,
            virtual_hosted,
            plan,
            conditional_put: if self.conditional_put {
                ConditionalPut::probe()
            } else {
                ConditionalPut::Disabled
            },
        })))
    }
}

/// Checks `name` against the S3 naming rules for general purpose buckets:
/// 3 to 63 characters; lowercase letters, digits, `.` and `-`; starting and
/// ending with a letter or digit; no `..`; not shaped like an IPv4 address;
/// none of the prefixes (`xn--`, `sthree-`, `amzn-s3-demo-`) and suffixes
/// (`-s3alias`, `--ol-s3`, `.mrap`, `--x-s3`, `--table-s3`) AWS reserves.
///
/// No leniency: MinIO creates buckets under the same rules, and Cloudflare
/// R2's (no `.` at all) are a subset. Names that only legacy setups accept
/// (uppercase letters or `_`: AWS us-east-1 buckets from before March 2018,
/// Ceph RGW with `rgw_relaxed_s3_bucket_names`) are refused too.
pub(crate) fn validate_bucket(name: &str) -> Result<()> {
    let bad = |why: String| {
        Err(Error::Config(format!(
            "invalid S3 bucket name {name:?}: {why}"
        )))
    };
    if !(3..=63).contains(&name.len()) {
        return bad(format!(
            "it must be 3 to 63 characters long, not {}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-')))
    {
        return bad(format!(
            "{c:?} is not allowed (lowercase letters, digits, '.' and '-' only)"
        ));
    }
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !alnum(name.chars().next()) || !alnum(name.chars().last()) {
        return bad("it must start and end with a letter or digit".into());
    }
    if name.contains("..") {
        return bad("it must not contain two adjacent periods".into());
    }
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() == 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        return bad("it must not be formatted as an IP address".into());
    }
    for reserved in ["xn--", "sthree-", "amzn-s3-demo-"] {
        if name.starts_with(reserved) {
            return bad(format!("the prefix {reserved:?} is reserved by AWS"));
        }
    }
    for reserved in ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"] {
        if name.ends_with(reserved) {
            return bad(format!("the suffix {reserved:?} is reserved by AWS"));
        }
    }
    Ok(())
}

/// Checks a key prefix: empty means none; otherwise `/`-separated segments
/// valid as a [`Key`], no leading `/`, and at most one trailing `/` (which
/// is dropped).
pub(crate) fn validate_prefix(prefix: &str) -> Result<Option<String>> {
    let bad =
        |why: &dyn std::fmt::Display| Error::Config(format!("invalid S3 prefix {prefix:?}: {why}"));
    if prefix.is_empty() {
        return Ok(None);
    }
    if prefix.starts_with('/') {
        return Err(bad(&"it must not start with '/'"));
    }
    let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
    Key::new(trimmed).map_err(|e| bad(&e))?;
    Ok(Some(trimmed.to_string()))
}

/// `https://host:port/path` → `https://{bucket}.host:port/path`.
fn bucket_host(endpoint: &url::Url, bucket: &str) -> String {
    let mut url = endpoint.clone();
    let host = format!("{bucket}.{}", endpoint.host_str().unwrap_or_default());
    // A valid endpoint has a host, and prefixing a DNS label keeps it valid.
    let _ = url.set_host(Some(&host));
    url.as_str().trim_end_matches('/').to_string()
}

fn parse_bool(name: &str, value: &str) -> Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        other => Err(Error::Config(format!("{name}={other:?} is not a boolean"))),
    }
}

#[cfg(test)]
mod tests;
