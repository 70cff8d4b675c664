//! The real backend: multipart POSTs over TLS that trust only the configured
//! CA and present the device's client certificate (mutual TLS) when configured;
//! one record per request, or a batch when a backlog is being cleared.
//!
//! Never follows redirects (evidence goes to the configured host or nowhere),
//! never trusts the system's root certificates, and never reads more than
//! [`MAX_ACK_BODY`] bytes of an answer.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::multipart::{Form, Part};
use reqwest::StatusCode;

use crate::config::UploadConfig;
use crate::store::PendingRecord;

use super::{Ack, Backend, UploadError};
use crate::net::{error_chain, pinned_client_with_identity, sanitise};

/// Largest acknowledgement body read; a longer one is an error, not an ack.
pub const MAX_ACK_BODY: usize = 64 * 1024;

/// Longest `Retry-After` taken at face value; a larger one is capped, so a
/// misconfigured backend cannot park a controller for days.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(6 * 3600);

/// Posts records to `{url}/api/v1/violations` (and `.../batch`).
pub struct HttpsBackend {
    client: reqwest::Client,
    endpoint: String,
    batch_endpoint: String,
    timeout: Duration,
}

impl HttpsBackend {
    /// Builds the client. Fails, naming the file, if the CA certificate cannot be
    /// read or holds no certificate; refuses `http://` unless `allow_plain_http`.
    pub fn new(cfg: &UploadConfig) -> Result<Self, UploadError> {
        let base = cfg.url.trim_end_matches('/');
        let bad = |reason: &str| UploadError::BadUrl {
            url: cfg.url.clone(),
            reason: reason.into(),
        };
        match base.split_once("://") {
            Some(("https", rest)) if !rest.is_empty() => {}
            Some(("http", rest)) if !rest.is_empty() => {
                if !cfg.allow_plain_http {
                    return Err(UploadError::PlainHttp {
                        url: cfg.url.clone(),
                    });
                }
            }
            _ => return Err(bad("not an https:// URL")),
        }
        let endpoint = format!("{base}/api/v1/violations");
        reqwest::Url::parse(&endpoint).map_err(|e| bad(&e.to_string()))?;

        let timeout = Duration::from_secs(cfg.timeout_s.max(1));
        let identity = match (&cfg.client_cert, &cfg.client_key) {
            (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
            _ => None,
        };
        let client =
            pinned_client_with_identity(&cfg.ca_cert, identity, timeout, cfg.allow_plain_http)?;
        Ok(HttpsBackend {
            client,
            batch_endpoint: format!("{endpoint}/batch"),
            endpoint,
            timeout,
        })
    }

    /// The URL records are posted to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    async fn post(&self, rec: &PendingRecord) -> Result<Ack, UploadError> {
        let form = add_parts(Form::new(), rec, "")?;
        let resp = self
            .client
            .post(&self.endpoint)
            .header("Idempotency-Key", rec.id.to_string())
            .multipart(form)
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        interpret(resp, rec).await.map_err(|e| self.transport(e))?
    }

    async fn post_batch(&self, recs: &[PendingRecord]) -> Result<Vec<uuid::Uuid>, UploadError> {
        let mut form = Form::new();
        for (i, rec) in recs.iter().enumerate() {
            form = add_parts(form, rec, &format!(".{i}"))?;
        }
        let resp = self
            .client
            .post(&self.batch_endpoint)
            .multipart(form)
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        interpret_batch(resp, recs)
            .await
            .map_err(|e| self.transport(e))?
    }

    fn transport(&self, e: reqwest::Error) -> UploadError {
        if e.is_timeout() {
            UploadError::Timeout {
                url: self.endpoint.clone(),
                timeout: self.timeout,
            }
        } else {
            UploadError::Transport {
                url: self.endpoint.clone(),
                detail: error_chain(&e),
            }
        }
    }
}

impl Backend for HttpsBackend {
    fn deliver<'a>(
        &'a self,
        rec: &'a PendingRecord,
    ) -> Pin<Box<dyn Future<Output = Result<Ack, UploadError>> + Send + 'a>> {
        Box::pin(self.post(rec))
    }

    fn deliver_batch<'a>(
        &'a self,
        recs: &'a [PendingRecord],
    ) -> Pin<Box<dyn Future<Output = Result<Vec<uuid::Uuid>, UploadError>> + Send + 'a>> {
        Box::pin(self.post_batch(recs))
    }
}

/// Adds one record's parts, names suffixed with `suffix` (`""`, or `.N` in a
/// batch): `metadata`, `signature` and the images or `evidence_dropped`; for a
/// record that expired undelivered, `tombstone` and `signature` only.
fn add_parts(form: Form, rec: &PendingRecord, suffix: &str) -> Result<Form, UploadError> {
    let part_err = |e: reqwest::Error| UploadError::Request {
        reason: error_chain(&e),
    };
    let json_part = if rec.tombstone().is_some() {
        "tombstone"
    } else {
        "metadata"
    };
    let mut form = form.part(
        format!("{json_part}{suffix}"),
        Part::text(rec.signed_json.clone())
            .mime_str("application/json")
            .map_err(part_err)?,
    );
    if let Some(sig) = &rec.signature {
        form = form.part(format!("signature{suffix}"), Part::text(sig.clone()));
    }
    if rec.tombstone().is_some() {
        return Ok(form);
    }
    form = match &rec.evidence_dropped {
        Some(reason) => form.part(
            format!("evidence_dropped{suffix}"),
            Part::text(reason.clone()),
        ),
        None => form
            .part(
                format!("overview{suffix}"),
                Part::bytes(rec.overview_jpeg.clone())
                    .file_name("overview.jpg")
                    .mime_str("image/jpeg")
                    .map_err(part_err)?,
            )
            .part(
                format!("crop{suffix}"),
                Part::bytes(rec.crop_jpeg.clone())
                    .file_name("crop.jpg")
                    .mime_str("image/jpeg")
                    .map_err(part_err)?,
            ),
    };
    Ok(form)
}

/// Turns an answer into an ack or an error. The outer error is a failure to
/// read the body; the inner result is the verdict on a complete answer.
async fn interpret(
    mut resp: reqwest::Response,
    rec: &PendingRecord,
) -> Result<Result<Ack, UploadError>, reqwest::Error> {
    let status = resp.status().as_u16();
    Ok(match successful_body(&mut resp).await? {
        Ok(body) => parse_ack(status, &body, rec),
        Err(e) => Err(e),
    })
}

/// The body of a 2xx answer, read up to [`MAX_ACK_BODY`]; any other status,
/// or a longer body, is the error that answer stands for.
async fn successful_body(
    resp: &mut reqwest::Response,
) -> Result<Result<Vec<u8>, UploadError>, reqwest::Error> {
    let status = resp.status();
    let retry_after = retry_after(status, resp.headers());
    let body = read_limited(resp).await?;
    if !status.is_success() {
        return Ok(Err(UploadError::Status {
            status: status.as_u16(),
            snippet: sanitise(body.as_deref().unwrap_or(b"(body over 64 KiB)")),
            retry_after,
        }));
    }
    Ok(body.ok_or_else(|| UploadError::BadAck {
        status: status.as_u16(),
        reason: format!("body over {MAX_ACK_BODY} bytes"),
        snippet: String::new(),
    }))
}

/// Turns a batch answer into the ids acknowledged: `200 {"acked": [...],
/// "error": ...}` where every id is one of `recs`; anything else is an error
/// and acknowledges nothing.
async fn interpret_batch(
    mut resp: reqwest::Response,
    recs: &[PendingRecord],
) -> Result<Result<Vec<uuid::Uuid>, UploadError>, reqwest::Error> {
    let status = resp.status();
    let body = match successful_body(&mut resp).await? {
        Ok(body) => body,
        Err(e) => return Ok(Err(e)),
    };
    #[derive(serde::Deserialize)]
    struct BatchBody {
        acked: Vec<String>,
        #[serde(default)]
        error: Option<String>,
    }
    let parsed: BatchBody = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => {
            return Ok(Err(UploadError::BadAck {
                status: status.as_u16(),
                reason: format!("not JSON with an `acked` list: {e}"),
                snippet: sanitise(&body),
            }))
        }
    };
    let mut acked = Vec::with_capacity(parsed.acked.len());
    for text in &parsed.acked {
        match uuid::Uuid::parse_str(text) {
            Ok(id) if recs.iter().any(|r| r.id == id) && !acked.contains(&id) => acked.push(id),
            // One id that is not ours spoils the whole answer.
            _ => {
                return Ok(Err(UploadError::WrongId {
                    expected: recs.first().map(|r| r.id).unwrap_or_default(),
                    got: sanitise(text.as_bytes()),
                }))
            }
        }
    }
    if acked.is_empty() {
        return Ok(Err(UploadError::Refused {
            reason: sanitise(
                parsed
                    .error
                    .as_deref()
                    .unwrap_or("nothing acknowledged")
                    .as_bytes(),
            ),
        }));
    }
    Ok(Ok(acked))
}

/// Checks a 2xx body: JSON `{"id": "<uuid>"}` naming this very record.
fn parse_ack(status: u16, body: &[u8], rec: &PendingRecord) -> Result<Ack, UploadError> {
    #[derive(serde::Deserialize)]
    struct AckBody {
        id: String,
    }
    let parsed: AckBody = serde_json::from_slice(body).map_err(|e| UploadError::BadAck {
        status,
        reason: format!("not JSON with a string `id`: {e}"),
        snippet: sanitise(body),
    })?;
    match uuid::Uuid::parse_str(&parsed.id) {
        Ok(id) if id == rec.id => Ok(Ack { id }),
        _ => Err(UploadError::WrongId {
            expected: rec.id,
            got: sanitise(parsed.id.as_bytes()),
        }),
    }
}

/// `Retry-After` in seconds, on 429 and 503 only. (The HTTP-date form is not
/// used by our backend and is ignored: the normal backoff applies.)
fn retry_after(status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
    if status != StatusCode::TOO_MANY_REQUESTS && status != StatusCode::SERVICE_UNAVAILABLE {
        return None;
    }
    let secs: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// The body, or `None` if it is longer than [`MAX_ACK_BODY`] (reading stops there).
async fn read_limited(resp: &mut reqwest::Response) -> Result<Option<Vec<u8>>, reqwest::Error> {
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_ACK_BODY as u64)
    {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > MAX_ACK_BODY {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(url: &str, ca: &std::path::Path, plain: bool) -> UploadConfig {
        UploadConfig {
            url: url.into(),
            ca_cert: ca.to_path_buf(),
            timeout_s: 5,
            backoff_initial_ms: 100,
            backoff_max_ms: 1000,
            allow_plain_http: plain,
            client_cert: None,
            client_key: None,
            batch_size: 8,
        }
    }

    #[test]
    fn missing_ca_file_is_named_in_the_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = dir.path().join("nope.pem");
        let err = HttpsBackend::new(&cfg("https://localhost", &ca, false))
            .err()
            .expect("error");
        assert!(err.to_string().contains(&ca.display().to_string()), "{err}");
    }

    #[test]
    fn ca_file_without_certificate_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "hello, not a certificate\n").expect("write");
        let err = HttpsBackend::new(&cfg("https://localhost", &ca, false))
            .err()
            .expect("error");
        assert!(
            matches!(err, UploadError::Net(crate::net::NetError::CaCert { .. })),
            "{err}"
        );
    }

    #[test]
    fn plain_http_is_refused_unless_allowed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = dir.path().join("nope.pem");
        let err = HttpsBackend::new(&cfg("http://localhost", &ca, false))
            .err()
            .expect("error");
        assert!(matches!(err, UploadError::PlainHttp { .. }), "{err}");
    }

    fn pending() -> PendingRecord {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = crate::store::Store::open(&dir.path().join("a.sqlite")).expect("open");
        s.record(
            &crate::testing::sample_violation("AB12CD"),
            &crate::testing::sample_context(),
        )
        .expect("record");
        s.pending(1).expect("pending").remove(0)
    }

    /// A canned answer, as if it came over the wire (axum re-exports the same
    /// `http` crate that reqwest converts from).
    fn answer(status: u16, body: Vec<u8>) -> reqwest::Response {
        let r = axum::http::Response::builder()
            .status(status)
            .body(body)
            .expect("response");
        reqwest::Response::from(r)
    }

    #[tokio::test]
    async fn matching_id_in_a_2xx_is_an_ack() {
        let rec = pending();
        let body = format!("{{\"id\":\"{}\"}}", rec.id).into_bytes();
        let ack = interpret(answer(201, body), &rec).await.expect("read");
        assert_eq!(ack.expect("ack").id, rec.id);
    }

    #[tokio::test]
    async fn a_redirect_is_an_error_with_its_status() {
        let rec = pending();
        let body = format!("{{\"id\":\"{}\"}}", rec.id).into_bytes();
        let err = interpret(answer(302, body), &rec)
            .await
            .expect("read")
            .expect_err("3xx");
        assert!(
            matches!(err, UploadError::Status { status: 302, .. }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_oversized_body_is_not_an_ack() {
        let rec = pending();
        let mut body = format!("{{\"id\":\"{}\",\"pad\":\"", rec.id).into_bytes();
        body.extend(std::iter::repeat_n(b'x', MAX_ACK_BODY));
        body.extend_from_slice(b"\"}");
        let err = interpret(answer(200, body), &rec)
            .await
            .expect("read")
            .expect_err("too big");
        assert!(matches!(err, UploadError::BadAck { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_server_error_quotes_a_sanitised_snippet() {
        let rec = pending();
        let err = interpret(answer(500, b"db down\n\x1b[0m".to_vec()), &rec)
            .await
            .expect("read")
            .expect_err("500");
        let text = err.to_string();
        assert!(text.contains("500") && text.contains("db down"), "{text}");
        assert!(!text.contains('\n') && !text.contains('\x1b'), "{text}");
    }

    #[test]
    fn snippets_are_short_and_single_line() {
        let s = sanitise(&[b'a'; 1000]);
        assert!(s.chars().count() <= crate::net::SNIPPET_CHARS + 1);
        assert_eq!(sanitise(b"a\nb\x1b[31m"), "a b [31m");
    }

    #[test]
    fn retry_after_is_read_only_on_429_and_503() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "120".parse().expect("header"));
        assert_eq!(
            retry_after(StatusCode::SERVICE_UNAVAILABLE, &h),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            retry_after(StatusCode::TOO_MANY_REQUESTS, &h),
            Some(Duration::from_secs(120))
        );
        assert_eq!(retry_after(StatusCode::INTERNAL_SERVER_ERROR, &h), None);
    }
}
