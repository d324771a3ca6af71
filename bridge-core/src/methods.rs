//! Direct methods: a router from method name to an async handler.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

/// What a handler answers: an HTTP-like status and a JSON payload.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodResponse {
    /// Status code (200 ok, 400 bad request, 404 unknown, 5xx failures).
    pub status: u16,
    /// JSON payload.
    pub payload: Value,
}

impl MethodResponse {
    /// 200 with a payload.
    pub fn ok(payload: Value) -> Self {
        Self {
            status: 200,
            payload,
        }
    }

    /// An error status with `{"error": message}`.
    pub fn error(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            payload: serde_json::json!({"error": message.into()}),
        }
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = MethodResponse> + Send>>;
type Handler = Arc<dyn Fn(Value) -> BoxFuture + Send + Sync>;

/// Method name → handler. Cheap to clone.
#[derive(Clone, Default)]
pub struct MethodRouter {
    handlers: HashMap<String, Handler>,
    timeout: Option<Duration>,
}

impl std::fmt::Debug for MethodRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MethodRouter")
            .field("methods", &self.handlers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl MethodRouter {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `handler` for `name` (replacing any earlier one).
    pub fn route<F, Fut>(mut self, name: &str, handler: F) -> Self
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = MethodResponse> + Send + 'static,
    {
        self.handlers
            .insert(name.to_owned(), Arc::new(move |v| Box::pin(handler(v))));
        self
    }

    /// Caps how long a handler may run before the caller gets 504 (default: none).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Names of registered methods.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<_> = self.handlers.keys().cloned().collect();
        names.sort();
        names
    }

    /// Runs the handler for `name` with the raw request body.
    /// Unknown methods get 404; a body that is not JSON gets 400.
    pub async fn dispatch(&self, name: &str, body: &[u8]) -> MethodResponse {
        let Some(handler) = self.handlers.get(name) else {
            return MethodResponse::error(
                404,
                format!(
                    "Unknown method '{name}'. Known: {}.",
                    self.names().join(", ")
                ),
            );
        };
        let request: Value = if body.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(e) => {
                    return MethodResponse::error(
                        400,
                        format!("The request body is not JSON: {e}"),
                    );
                }
            }
        };
        let fut = handler(request);
        match self.timeout {
            Some(t) => tokio::time::timeout(t, fut).await.unwrap_or_else(|_| {
                MethodResponse::error(504, format!("The method did not finish within {t:?}."))
            }),
            None => fut.await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn dispatches_and_reports_errors() {
        let router = MethodRouter::new()
            .route("echo", |v| async move { MethodResponse::ok(v) })
            .route("slow", |_| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                MethodResponse::ok(Value::Null)
            })
            .with_timeout(Duration::from_millis(50));
        assert_eq!(
            router.dispatch("echo", br#"{"a":1}"#).await,
            MethodResponse::ok(json!({"a": 1}))
        );
        assert_eq!(
            router.dispatch("echo", b" ").await,
            MethodResponse::ok(Value::Null)
        );
        assert_eq!(router.dispatch("echo", b"{not json").await.status, 400);
        assert_eq!(router.dispatch("nope", b"{}").await.status, 404);
        assert_eq!(router.dispatch("slow", b"{}").await.status, 504);
    }
}
