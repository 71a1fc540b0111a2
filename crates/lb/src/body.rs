//! Request and response bodies of the HTTP proxy.
//!
//! - [`Source`] is what the proxy keeps of a client's request body so it can send it more than
//!   once: nothing, the whole body (≤ `retry_buffer`), or a buffered prefix plus the rest of the
//!   client stream in a slot that the first send takes.
//! - [`ReqBody`] is one send of a [`Source`].
//! - [`RespBody`] passes a backend's response through and finishes the request's bookkeeping
//!   (latency, errors, in-flight) when hyper is done with it.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http_body_util::BodyExt;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::HeaderMap;
use tokio::time::Instant;

use crate::backend::Attempt;

type Slot = Arc<Mutex<Option<Incoming>>>;

/// A client's request body as the proxy holds it.
pub(crate) enum Source {
    Empty,
    Full(Bytes, Option<HeaderMap>),
    /// Larger than the retry buffer: the prefix read so far and the rest, still in the client's
    /// connection. Replayable only until the first send starts reading it.
    Stream(Bytes, Slot),
}

impl Source {
    /// Reads the body: up to `limit` bytes are buffered; past that (or when `Content-Length` says
    /// so up front) the rest streams. An error here (invalid chunking, client gone) means nothing
    /// reached a backend yet.
    pub(crate) async fn read(mut body: Incoming, limit: usize) -> Result<Source, hyper::Error> {
        if body.is_end_stream() {
            return Ok(Source::Empty);
        }
        if body.size_hint().exact().is_some_and(|n| n > limit as u64) {
            return Ok(Source::Stream(Bytes::new(), Arc::new(Mutex::new(Some(body)))));
        }
        let mut first: Option<Bytes> = None;
        let mut joined: Vec<u8> = Vec::new();
        let mut len = 0usize;
        let mut trailers = None;
        while let Some(frame) = body.frame().await {
            match frame?.into_data() {
                Ok(data) => {
                    len += data.len();
                    // why: the common case is one data frame; keep it without copying.
                    if first.is_none() && joined.is_empty() {
                        first = Some(data);
                    } else {
                        if let Some(f) = first.take() {
                            joined.reserve(len);
                            joined.extend_from_slice(&f);
                        }
                        joined.extend_from_slice(&data);
                    }
                    if len > limit {
                        let prefix = first.take().unwrap_or_else(|| Bytes::from(std::mem::take(&mut joined)));
                        return Ok(Source::Stream(prefix, Arc::new(Mutex::new(Some(body)))));
                    }
                    if body.is_end_stream() {
                        break;
                    }
                }
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        trailers = Some(t);
                    }
                }
            }
        }
        let data = first.unwrap_or_else(|| Bytes::from(joined));
        Ok(if data.is_empty() && trailers.is_none() { Source::Empty } else { Source::Full(data, trailers) })
    }

    /// Fully buffered (or empty): can be sent any number of times.
    pub(crate) fn is_buffered(&self) -> bool {
        !matches!(self, Source::Stream(..))
    }

    /// A body for one more send; `None` once a streaming body has started to go out.
    pub(crate) fn replay(&self) -> Option<ReqBody> {
        Some(match self {
            Source::Empty => ReqBody::Empty,
            Source::Full(data, trailers) => {
                ReqBody::Full { data: (!data.is_empty()).then(|| data.clone()), trailers: trailers.clone() }
            }
            Source::Stream(prefix, slot) => {
                if slot.lock().unwrap_or_else(|e| e.into_inner()).is_none() {
                    return None;
                }
                ReqBody::Stream {
                    prefix: (!prefix.is_empty()).then(|| prefix.clone()),
                    slot: Some(slot.clone()),
                    rest: None,
                }
            }
        })
    }
}

/// One send of a request body to a backend.
pub(crate) enum ReqBody {
    Empty,
    Full { data: Option<Bytes>, trailers: Option<HeaderMap> },
    Stream { prefix: Option<Bytes>, slot: Option<Slot>, rest: Option<Incoming> },
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ReqBody::Empty => Poll::Ready(None),
            ReqBody::Full { data, trailers } => {
                if let Some(d) = data.take() {
                    return Poll::Ready(Some(Ok(Frame::data(d))));
                }
                Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(t))))
            }
            ReqBody::Stream { prefix, slot, rest } => {
                // why: the first poll takes the client stream out of the shared slot; from then on
                // this request can no longer be replayed elsewhere.
                if let Some(slot) = slot.take() {
                    *rest = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
                }
                if let Some(p) = prefix.take() {
                    return Poll::Ready(Some(Ok(Frame::data(p))));
                }
                match rest {
                    Some(r) => Pin::new(r).poll_frame(cx),
                    None => Poll::Ready(None),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Empty => true,
            ReqBody::Full { data, trailers } => data.is_none() && trailers.is_none(),
            ReqBody::Stream { .. } => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReqBody::Empty => SizeHint::with_exact(0),
            ReqBody::Full { data, .. } => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            ReqBody::Stream { .. } => SizeHint::default(),
        }
    }
}

/// Bookkeeping of a proxied request, finished when the response body is done (or dropped): the
/// backend's in-flight count covers the whole response, which is what a drain waits for.
pub(crate) struct Completion {
    attempt: Attempt,
    start: Instant,
    error: bool,
}

impl Completion {
    pub(crate) fn new(attempt: Attempt, start: Instant, error: bool) -> Self {
        Completion { attempt, start, error }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        let now = Instant::now();
        self.attempt.backend().record(now.saturating_duration_since(self.start), self.error, now);
    }
}

/// A response body: a backend's, passed through, or one the balancer wrote itself.
pub(crate) enum RespBody {
    Proxied { inner: Incoming, done: Completion },
    Local(Option<Bytes>),
}

impl RespBody {
    pub(crate) fn local(text: &'static str) -> Self {
        RespBody::Local(Some(Bytes::from_static(text.as_bytes())))
    }
}

impl Body for RespBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            RespBody::Proxied { inner, done } => {
                let polled = Pin::new(inner).poll_frame(cx);
                if let Poll::Ready(Some(Err(_))) = &polled {
                    done.error = true; // the backend broke off mid-body
                }
                polled
            }
            RespBody::Local(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RespBody::Proxied { inner, .. } => inner.is_end_stream(),
            RespBody::Local(data) => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RespBody::Proxied { inner, .. } => inner.size_hint(),
            RespBody::Local(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
        }
    }
}
