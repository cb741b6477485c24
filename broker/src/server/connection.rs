//! One client connection: read frames, dispatch them in order, write replies in order.
//!
//! Two halves run concurrently in the connection's task (`tokio::join!`, no extra
//! task): the reader parses frames (size-checked before the buffer grows for them),
//! dispatches each in arrival order and queues its [`Reply`]; the writer takes replies
//! from the queue in the same order, awaits the ones that complete later (acks=all,
//! long polls), and writes them with vectored writes. Pipelined requests are therefore
//! read ahead and executed in order, and their responses leave in order, while a long
//! poll does not stop the next requests from being read. The queue is bounded, which
//! stops reading when a client pipelines faster than replies drain.
//!
//! Any framing or decoding error closes only this connection, after the replies already
//! queued are written.
//!
//! Limits (see `limits`): a request of up to [`SMALL_FRAME`] bytes is read into a window
//! of that size; a larger one first reserves its remaining bytes from its address's
//! share and the broker-wide budget (`queued.max.request.bytes`; while either is spent
//! this connection reads nothing more), and its buffer then grows as its bytes arrive, at most [`MAX_READ`] at a time,
//! never from the announced size alone. The reservation is returned once the request
//! has been handled. A request incomplete with no bytes arriving for
//! `request.read.timeout.ms` (a progress timeout, not a deadline for the whole request:
//! a large request over a slow link is not cut; the wait for the budget does not
//! count) closes the connection, as does
//! `connections.max.idle.ms` with no request in progress, or with replies to write and
//! no reply byte taken by the client for that long (a client that stops reading would
//! otherwise hold its connection for ever: the writer waits on the socket, the reader
//! on the full reply queue, and neither timer runs).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use std::future::Future;
use std::task::Poll;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::dispatch::{self, Context, Reply};
use super::frame::{parse_frame, Parsed};
use super::limits::{Activity, Limits, Reservation, SMALL_FRAME};
use super::wire::Frame;
use crate::metrics::requests::{StageTimes, REQUESTS};
use crate::quotas::QuotaKind;
use crate::security::session::Session;
use kafka_protocol::messages::ApiKey;

/// Replies queued per connection before the reader waits (pipelining depth).
const MAX_QUEUED: usize = 128;
/// Largest growth of the read buffer at a time (for requests over [`SMALL_FRAME`]).
const MAX_READ: usize = 1024 * 1024;
/// Largest request before a SASL login (Kafka's `sasl.server.max.receive.size` default).
const UNAUTHENTICATED_MAX_BYTES: usize = 512 * 1024;
/// Stop batching replies into one write beyond this many bytes.
const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// What the connection's halves share besides the dispatch context.
pub struct Limited<'a> {
    pub limits: &'a Limits,
    pub activity: &'a Activity,
}

/// Serves a connection until the client closes it, an error or a limit closes it, or
/// shutdown. The halves are a TCP socket's (plaintext listeners) or a TLS stream's;
/// `session` holds who the client is (see `security::session`).
pub async fn serve<R, W>(reader: R, writer: W, session: Session, ctx: Context, limited: Limited<'_>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let peer: SocketAddr = ctx.peer;
    let (tx, rx) = mpsc::channel(MAX_QUEUED);
    tracing::debug!("connection opened");
    let slow = ctx.state.config.observability.slow_request_threshold_ms;
    let slow = (slow > 0).then(|| std::time::Duration::from_millis(slow));
    tokio::join!(
        read_loop(reader, session, tx, &ctx, &limited),
        write_loop(writer, rx, &limited, slow, peer)
    );
    tracing::debug!(%peer, "connection closed");
}

/// Logs why a client's input closes its connection: one warning per peer address per
/// interval (with the count held back), every one at debug.
fn warn_closing(ctx: &Context, limits: &Limits, error: &dyn std::fmt::Display) {
    match limits
        .malformed_warnings
        .admit(ctx.peer.ip(), std::time::Instant::now())
    {
        Some(suppressed) => {
            tracing::warn!(error = %error, suppressed, "closing connection")
        }
        None => tracing::debug!(error = %error, "closing connection"),
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: R,
    mut session: Session,
    tx: mpsc::Sender<(Reply, Timing)>,
    ctx: &Context,
    limited: &Limited<'_>,
) {
    let Limited { limits, activity } = *limited;
    let configured_max = ctx.state.config.socket_request_max_bytes;
    let mut shutdown = ctx.shutdown.clone();
    let mut buf = BytesMut::with_capacity(SMALL_FRAME);
    // The budget reserved for the request being read, when it is over SMALL_FRAME.
    let mut reserved: Option<Reservation> = None;
    // While a request is being read: when its last bytes arrived (or its wait for the
    // budget ended). request.read.timeout.ms runs from there.
    let mut progress: Option<Instant> = None;
    // When the last read returned: a frame parsed now was complete by then.
    let mut last_read = Instant::now();
    let slow_log = ctx.state.config.observability.slow_request_threshold_ms > 0;
    loop {
        if *shutdown.borrow() {
            return;
        }
        // A throttled client (client quotas, KIP-219): nothing is read until its
        // throttle time has passed.
        if let Some(until) = session.mute.until() {
            tokio::select! {
                () = tokio::time::sleep_until(until.into()) => {}
                _ = shutdown.changed() => return,
                () = tx.closed() => return,
            }
            // The wait was ours, not the client's: a request in progress gets its full
            // read timeout again.
            if let Some(progress) = progress.as_mut() {
                *progress = Instant::now();
            }
            continue;
        }
        // Before a SASL login, requests are small (Kafka's sasl.server.max.receive.size):
        // a stranger may not make the broker buffer 100 MB.
        let max = if session.is_authenticated() {
            configured_max
        } else {
            configured_max.min(UNAUTHENTICATED_MAX_BYTES)
        };
        match parse_frame(&mut buf, max) {
            Ok(Parsed::Frame(frame)) => {
                activity.request_read(!buf.is_empty());
                let reservation = reserved.take();
                if reservation.is_some() {
                    // `buf` still shares the large request's allocation; kept, it would
                    // become this connection's buffer and hold that memory after the
                    // reservation is returned. Move what follows (at most a window) to
                    // a fresh window so the allocation goes with the request.
                    let mut rest = BytesMut::with_capacity(SMALL_FRAME.max(buf.len()));
                    rest.extend_from_slice(&buf);
                    buf = rest;
                }
                let mut timing = Timing::of(&frame, last_read, slow_log);
                // Request-time quotas: only measured while some quota is set.
                let quota_client = ctx
                    .state
                    .quotas
                    .any()
                    .then(|| client_id(&frame).unwrap_or_default());
                let handling = Instant::now();
                let reply = match dispatch::dispatch(ctx, &mut session, frame).await {
                    Ok(reply) => reply,
                    Err(e) => {
                        warn_closing(ctx, limits, &e);
                        Reply::Close
                    }
                };
                timing.local_end = Instant::now();
                if let Some(client) = quota_client {
                    // Percent-seconds of one thread, as Kafka's request quota counts.
                    let used = timing
                        .local_end
                        .saturating_duration_since(handling)
                        .as_secs_f64()
                        * 100.0;
                    let throttle = ctx.state.quotas.record(
                        QuotaKind::Request,
                        &session.principal().name,
                        &client,
                        used,
                    );
                    session.mute.extend(throttle);
                }
                // Handled: what is left of the request is in the reply, not the frame.
                drop(reservation);
                let close = matches!(reply, Reply::Close);
                if tx.send((reply, timing)).await.is_err() || close {
                    return;
                }
                // A failed login (and the like) closes once its answer is sent.
                if session.close_after_reply {
                    let _ = tx.send((Reply::Close, Timing::none())).await;
                    return;
                }
                // The next request's clock starts now: time spent handling this one
                // (an fsync, a topic creation) or waiting for the reply queue is ours.
                progress = (!buf.is_empty()).then(Instant::now);
            }
            Ok(Parsed::Incomplete(missing)) => {
                let size_known = buf.len() >= 4;
                let limit = if size_known && buf.len() + missing > SMALL_FRAME {
                    if reserved.is_none() {
                        let needed = u32::try_from(missing).unwrap_or(u32::MAX);
                        tokio::select! {
                            reservation = limits.reserve(activity, needed) => match reservation {
                                Some(reservation) => reserved = Some(reservation),
                                // The budget is never closed; if it were, stop reading.
                                None => return,
                            },
                            _ = shutdown.changed() => return,
                            () = tx.closed() => return,
                        }
                        // Waiting for other clients' requests is not this one's delay.
                        if let Some(progress) = progress.as_mut() {
                            *progress = Instant::now();
                        }
                    }
                    if missing <= MAX_READ {
                        // The rest fits one read: let it also take what follows, up
                        // to a window's worth, so pipelined requests need no extra
                        // read each (what follows is within the window's allowance).
                        missing + SMALL_FRAME
                    } else {
                        MAX_READ
                    }
                } else {
                    // A small request, or its size is not known yet: within the window
                    // (buf holds less than a window here, as a request of at most
                    // SMALL_FRAME is incomplete; never 0, which would read as EOF).
                    SMALL_FRAME.saturating_sub(buf.len()).max(1)
                };
                buf.reserve(limit);
                let deadline = match progress {
                    Some(progress) => progress + limits.read_timeout,
                    None if activity.is_idle() => {
                        Instant::now()
                            + limits
                                .idle_timeout
                                .saturating_sub(activity.quiet_for(limits))
                    }
                    // Replies still owed: not idle; look again later.
                    None => Instant::now() + limits.idle_timeout,
                };
                let mut window = (&mut reader).take(limit as u64);
                tokio::select! {
                    read = window.read_buf(&mut buf) => match read {
                        Ok(0) => {
                            if !buf.is_empty() {
                                tracing::debug!(buffered = buf.len(), "client closed mid-request");
                            }
                            return;
                        }
                                                Ok(_) => {
                            last_read = Instant::now();
                            activity.touch(limits);
                            // Busy before the request can be handled; if the
                            // connection was chosen for eviction first, it closes
                            // without handling what it read.
                            if progress.is_none() && !activity.begin_request() {
                                return;
                            }
                            progress = Some(Instant::now());
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "read failed");
                            return;
                        }
                    },
                    () = tokio::time::sleep_until(deadline) => {
                        if progress.is_some() {
                            let error = format!(
                                "request incomplete: no bytes for request.read.timeout.ms ({} ms), {} buffered",
                                limits.read_timeout.as_millis(),
                                buf.len()
                            );
                            warn_closing(ctx, limits, &error);
                            return;
                        }
                        if activity.is_idle() && activity.quiet_for(limits) >= limits.idle_timeout {
                            tracing::debug!(
                                idle_ms = limits.idle_timeout.as_millis() as u64,
                                "closing idle connection (connections.max.idle.ms)"
                            );
                            return;
                        }
                    }
                    _ = shutdown.changed() => return,
                    // The writer stopped (the client went away): stop reading too.
                    () = tx.closed() => return,
                }
            }
            Err(e) => {
                warn_closing(ctx, limits, &e);
                return;
            }
        }
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut rx: mpsc::Receiver<(Reply, Timing)>,
    limited: &Limited<'_>,
    slow: Option<std::time::Duration>,
    peer: SocketAddr,
) {
    let Limited { limits, activity } = *limited;
    let mut next: Option<(Reply, Timing)> = None;
    // The requests whose replies go out in the current write: (timing, taken from the
    // queue, resolved).
    let mut batch: Vec<(Timing, Instant, Instant)> = Vec::new();
    loop {
        let (reply, timing) = match next.take() {
            Some(item) => item,
            None => match rx.recv().await {
                Some(item) => item,
                None => break,
            },
        };
        let picked = Instant::now();
        let mut out = match resolve(reply).await {
            Resolved::Frame(frame) => frame,
            Resolved::Nothing => {
                let now = Instant::now();
                timing.finish(picked, now, now, slow, peer);
                activity.replies_done(1, limits);
                continue;
            }
            Resolved::Close => break,
        };
        batch.push((timing, picked, Instant::now()));
        let mut replies = 1;
        // Replies that are already complete go out in the same write.
        while out.remaining_len() < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok((Reply::Now(frame), timing)) => {
                    out.append(frame);
                    let now = Instant::now();
                    batch.push((timing, now, now));
                    replies += 1;
                }
                Ok((Reply::Nothing, timing)) => {
                    let now = Instant::now();
                    timing.finish(now, now, now, slow, peer);
                    replies += 1;
                }
                Ok(other) => {
                    next = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        if !write_with_progress(&mut writer, &mut out, limited).await {
            break;
        }
        let sent = Instant::now();
        for (timing, picked, resolved) in batch.drain(..) {
            timing.finish(picked, resolved, sent, slow, peer);
        }
        activity.replies_done(replies, limits);
    }
    // Dropping the receiver tells the reader to stop; shut down the write side so the
    // client sees the close after the last reply.
    drop(rx);
    if let Err(e) = writer.shutdown().await {
        tracing::debug!(error = %e, "socket shutdown failed");
    }
}

/// When a request went through the stages the metrics split it into (see
/// `metrics::requests`).
struct Timing {
    /// None for the connection's own markers (a close after a failed login).
    api: Option<ApiKey>,
    version: i16,
    correlation_id: i32,
    /// Only read when slow requests are logged.
    client_id: Option<String>,
    /// When the read that completed the frame returned.
    read: Instant,
    /// When its handling began and ended.
    local_start: Instant,
    local_end: Instant,
}

impl Timing {
    fn of(frame: &bytes::Bytes, read: Instant, with_client_id: bool) -> Timing {
        let now = Instant::now();
        let prefix = super::frame::RequestPrefix::read(frame);
        Timing {
            api: prefix.and_then(|p| ApiKey::try_from(p.api_key).ok()),
            version: prefix.map_or(0, |p| p.api_version),
            correlation_id: prefix.map_or(0, |p| p.correlation_id),
            client_id: with_client_id.then(|| client_id(frame)).flatten(),
            read,
            local_start: now,
            local_end: now,
        }
    }

    fn none() -> Timing {
        let now = Instant::now();
        Timing {
            api: None,
            version: 0,
            correlation_id: 0,
            client_id: None,
            read: now,
            local_start: now,
            local_end: now,
        }
    }

    /// The reply was taken from the queue at `picked`, complete at `resolved` and
    /// written at `sent`: records the request's stages, and logs it if it was slow.
    fn finish(
        self,
        picked: Instant,
        resolved: Instant,
        sent: Instant,
        slow: Option<std::time::Duration>,
        peer: SocketAddr,
    ) {
        let Some(api) = self.api else {
            return;
        };
        let times = StageTimes {
            queue: self.local_start.saturating_duration_since(self.read),
            local: self.local_end.saturating_duration_since(self.local_start),
            response_queue: picked.saturating_duration_since(self.local_end),
            remote: resolved.saturating_duration_since(picked),
            send: sent.saturating_duration_since(resolved),
        };
        REQUESTS.record(api, self.version, &times);
        // A long poll (Fetch) and a parked group request wait by design: only the time
        // the broker spent counts for them.
        let waits_by_design = matches!(api, ApiKey::Fetch | ApiKey::JoinGroup | ApiKey::SyncGroup);
        let spent = if waits_by_design {
            times.total().saturating_sub(times.remote)
        } else {
            times.total()
        };
        if slow.is_some_and(|slow| spent > slow) && SLOW_LOG.admit() {
            let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
            tracing::warn!(
                request_id = %format!("{peer}/{}", self.correlation_id),
                api = ?api,
                version = self.version,
                client_id = self.client_id.as_deref().unwrap_or(""),
                %peer,
                total_ms = ms(times.total()),
                queue_ms = ms(times.queue),
                local_ms = ms(times.local),
                response_queue_ms = ms(times.response_queue),
                remote_ms = ms(times.remote),
                send_ms = ms(times.send),
                "slow request (slow.request.threshold.ms)"
            );
        }
    }
}

/// At most [`SlowLog::PER_SECOND`] slow-request lines a second, process-wide: a
/// threshold set too low must not flood the log.
struct SlowLog {
    /// The second (since the first slow request) and the lines logged in it.
    second: AtomicU64,
    logged: AtomicU64,
}

static SLOW_LOG: SlowLog = SlowLog {
    second: AtomicU64::new(0),
    logged: AtomicU64::new(0),
};

static SLOW_EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

impl SlowLog {
    const PER_SECOND: u64 = 10;

    fn admit(&self) -> bool {
        let now = SLOW_EPOCH
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_secs();
        if self.second.swap(now, Ordering::Relaxed) != now {
            self.logged.store(0, Ordering::Relaxed);
        }
        self.logged.fetch_add(1, Ordering::Relaxed) < Self::PER_SECOND
    }
}

/// The client id of a request header (v1+: after api key, version and correlation id,
/// a nullable int16-length string), read without decoding the rest.
fn client_id(frame: &[u8]) -> Option<String> {
    let length = i16::from_be_bytes(frame.get(8..10)?.try_into().ok()?);
    let length = usize::try_from(length).ok()?;
    let bytes = frame.get(10..10 + length)?;
    Some(String::from_utf8_lossy(bytes).into_owned())
}

/// Writes all of `out`, or gives up (`false`) on an error or when the client has read
/// nothing for `connections.max.idle.ms`: the timer restarts whenever bytes go out, so
/// a slow reader is served and only one that stopped reading is closed (Kafka's idle
/// expiry likewise counts socket activity). While the socket accepts nothing, the
/// connection is marked as waiting so that it can be evicted at `max.connections`.
async fn write_with_progress<W: AsyncWrite + Unpin>(
    writer: &mut W,
    out: &mut Frame,
    limited: &Limited<'_>,
) -> bool {
    let Limited { limits, activity } = *limited;
    while bytes::Buf::has_remaining(out) {
        // The timer is only armed if the write waits (a full socket buffer).
        activity.set_write_waiting(true, limits);
        let written = tokio::time::timeout(limits.idle_timeout, writer.write_buf(out)).await;
        activity.set_write_waiting(false, limits);
        let Ok(written) = written else {
            tracing::debug!(
                idle_ms = limits.idle_timeout.as_millis() as u64,
                unwritten = out.remaining_len(),
                "closing connection: the client read no reply bytes for connections.max.idle.ms"
            );
            return false;
        };
        match written {
            Ok(0) => {
                tracing::debug!("write failed: the socket accepts no more bytes");
                return false;
            }
            Ok(_) => activity.touch(limits),
            Err(e) => {
                tracing::debug!(error = %e, "write failed");
                return false;
            }
        }
    }
    // A TLS stream may keep the end of what it was given in its own buffer when the
    // socket was full ("written" to the stream, not yet to the socket); nothing pushes it
    // out until the next write, which may never come. Flushing sends it. On TCP, and on
    // TLS with nothing held back, the flush is ready at once: only a flush that has to
    // wait arms the timer and marks the connection as waiting.
    let mut flush = std::pin::pin!(writer.flush());
    let ready = std::future::poll_fn(|cx| Poll::Ready(flush.as_mut().poll(cx))).await;
    let flushed = match ready {
        Poll::Ready(result) => Ok(result),
        Poll::Pending => {
            activity.set_write_waiting(true, limits);
            let flushed = tokio::time::timeout(limits.idle_timeout, flush).await;
            activity.set_write_waiting(false, limits);
            flushed
        }
    };
    match flushed {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "flush failed");
            false
        }
        Err(_) => {
            tracing::debug!(
                idle_ms = limits.idle_timeout.as_millis() as u64,
                "closing connection: the client read no reply bytes for connections.max.idle.ms"
            );
            false
        }
    }
}

enum Resolved {
    Frame(Frame),
    Nothing,
    Close,
}

async fn resolve(reply: Reply) -> Resolved {
    match reply {
        Reply::Now(frame) => Resolved::Frame(frame),
        Reply::Nothing => Resolved::Nothing,
        Reply::Close => Resolved::Close,
        Reply::Later(future) => match future.await {
            Ok(Some(frame)) => Resolved::Frame(frame),
            Ok(None) => Resolved::Nothing,
            Err(e) => {
                tracing::error!(error = %e, "closing connection");
                Resolved::Close
            }
        },
    }
}

impl Frame {
    fn remaining_len(&self) -> usize {
        bytes::Buf::remaining(self)
    }
}
