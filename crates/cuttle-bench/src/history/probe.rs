//! Timing requests against the running server: medians of repeated
//! requests, each read to its last byte and dropped as it arrives (so the
//! bench's own memory does not grow with a large answer), and the tail
//! latency of a small request while a large one runs.

use super::table::Figure;
use crate::{ms, Stats};
use reqwest::header::{HeaderMap, HeaderValue, COOKIE};
use reqwest::{Client, Method, StatusCode};
use serde_json::Value;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A request's outcome when it is not a number.
pub enum Failure {
    TimedOut,
    NotFound,
    Other(String),
}

impl From<Failure> for Figure {
    fn from(f: Failure) -> Figure {
        match f {
            Failure::TimedOut => Figure::TimedOut,
            Failure::NotFound => Figure::NoRoute,
            Failure::Other(e) => Figure::Failed(e),
        }
    }
}

impl From<reqwest::Error> for Failure {
    fn from(e: reqwest::Error) -> Failure {
        if e.is_timeout() {
            Failure::TimedOut
        } else {
            Failure::Other(e.to_string())
        }
    }
}

/// Requests to one server, as the API key's user or as a signed-in portal session.
#[derive(Clone)]
pub struct Probe {
    pub http: Client,
    pub base: String,
    /// The portal session's cookie, for portal pages.
    pub cookie: Option<String>,
    pub samples: u32,
    /// A figure stops taking samples once this much time went into it.
    pub budget: Duration,
    /// What the client waits for one answer.
    pub timeout: Duration,
}

impl Probe {
    /// Sends a request and reads its answer to the end; returns its body
    /// when `keep` (for JSON answers), else its length.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        keep: bool,
    ) -> Result<(usize, Option<Value>), Failure> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(cookie) = &self.cookie {
            let mut headers = HeaderMap::new();
            let value = HeaderValue::from_str(cookie).map_err(|e| Failure::Other(e.to_string()))?;
            headers.insert(COOKIE, value);
            req = req.headers(headers);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let mut resp = req.send().await?;
        let status = resp.status();
        if status == StatusCode::NOT_FOUND && !keep {
            return Err(Failure::NotFound);
        }
        let mut kept = Vec::new();
        let mut size = 0;
        while let Some(chunk) = resp.chunk().await? {
            size += chunk.len();
            if keep || !status.is_success() {
                kept.extend_from_slice(&chunk);
            }
        }
        if !status.is_success() {
            return Err(Failure::Other(format!(
                "{method} {path}: {status}: {}",
                String::from_utf8_lossy(&kept[..kept.len().min(300)])
            )));
        }
        let json = if keep {
            Some(serde_json::from_slice(&kept).map_err(|e| {
                Failure::Other(format!("{method} {path}: the answer is not JSON: {e}"))
            })?)
        } else {
            None
        };
        Ok((size, json))
    }

    pub async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        match self.send(method.clone(), path, body, true).await {
            Ok((_, Some(v))) => Ok(v),
            Ok((_, None)) => anyhow::bail!("{method} {path}: no answer"),
            Err(Failure::TimedOut) => anyhow::bail!("{method} {path}: timed out"),
            Err(Failure::NotFound) => anyhow::bail!("{method} {path}: not found"),
            Err(Failure::Other(e)) => anyhow::bail!("{e}"),
        }
    }

    /// The median time of GET `path`, read to the end.
    pub async fn get(&self, path: &str) -> Figure {
        self.median(|| async move { self.send(Method::GET, path, None, false).await.map(|_| ()) })
            .await
    }

    /// The median of up to `samples` runs of `f` (at least one; fewer once
    /// the budget is spent). The first failure ends it.
    pub async fn median<F, Fut>(&self, mut f: F) -> Figure
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), Failure>>,
    {
        let started = Instant::now();
        let mut times = vec![];
        while times.len() < self.samples as usize
            && (times.is_empty() || started.elapsed() < self.budget)
        {
            let t0 = Instant::now();
            if let Err(e) = f().await {
                return e.into();
            }
            times.push(ms(t0.elapsed()));
        }
        Figure::Value(Stats::of(times).median)
    }

    /// The 99th percentile of GET `small`, sent one after another, while
    /// GET `large` runs over and over alongside (or alone if `None`): at
    /// least `min_samples` of them, and until the large one finished once.
    pub async fn p99_while(&self, small: &str, large: Option<&str>, min_samples: usize) -> Figure {
        let finished = Arc::new(AtomicU32::new(0));
        let background = large.map(|path| {
            let (probe, path) = (self.clone(), path.to_owned());
            let finished = finished.clone();
            tokio::spawn(async move {
                loop {
                    if let Err(e) = probe.send(Method::GET, &path, None, false).await {
                        return e;
                    }
                    finished.fetch_add(1, Ordering::SeqCst);
                }
            })
        });
        if background.is_some() {
            // Let the large request reach the server first.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let large_running = || {
            background.as_ref().is_some_and(|t| !t.is_finished())
                && finished.load(Ordering::SeqCst) == 0
        };
        let started = Instant::now();
        let mut times = vec![];
        let mut outcome = None;
        while (times.len() < min_samples || large_running())
            && started.elapsed() < self.timeout + self.budget
        {
            let t0 = Instant::now();
            if let Err(e) = self.send(Method::GET, small, None, false).await {
                outcome = Some(Figure::from(e));
                break;
            }
            times.push(ms(t0.elapsed()));
        }
        if let Some(task) = background {
            if finished.load(Ordering::SeqCst) == 0 && task.is_finished() {
                // The large request failed (timed out): that is the figure.
                if let Ok(e) = task.await {
                    return e.into();
                }
            } else {
                task.abort();
            }
        }
        if let Some(f) = outcome {
            return f;
        }
        if times.is_empty() {
            return Figure::TimedOut;
        }
        times.sort_by(f64::total_cmp);
        let rank = ((times.len() as f64 * 0.99).ceil() as usize).clamp(1, times.len());
        Figure::Value(times[rank - 1])
    }
}
