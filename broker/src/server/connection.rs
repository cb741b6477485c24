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

use std::net::SocketAddr;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::dispatch::{self, Context, Reply};
use super::frame::{parse_frame, Parsed};
use super::wire::Frame;

/// Replies queued per connection before the reader waits (pipelining depth).
const MAX_QUEUED: usize = 128;
/// Smallest and largest growth of the read buffer at a time.
const MIN_READ: usize = 16 * 1024;
const MAX_READ: usize = 1024 * 1024;
/// Stop batching replies into one write beyond this many bytes.
const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// Serves a connection until the client closes it, an error closes it, or shutdown.
pub async fn serve(stream: TcpStream, peer: SocketAddr, ctx: Context) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    let (reader, writer) = stream.into_split();
    let (tx, rx) = mpsc::channel(MAX_QUEUED);
    tracing::debug!("connection opened");
    tokio::join!(read_loop(reader, tx, &ctx), write_loop(writer, rx));
    tracing::debug!(%peer, "connection closed");
}

async fn read_loop(mut reader: OwnedReadHalf, tx: mpsc::Sender<Reply>, ctx: &Context) {
    let max = ctx.state.config.socket_request_max_bytes;
    let mut shutdown = ctx.shutdown.clone();
    let mut buf = BytesMut::with_capacity(MIN_READ);
    loop {
        if *shutdown.borrow() {
            return;
        }
        match parse_frame(&mut buf, max) {
            Ok(Parsed::Frame(frame)) => {
                let reply = match dispatch::dispatch(ctx, frame).await {
                    Ok(reply) => reply,
                    Err(e) => {
                        tracing::warn!(error = %e, "closing connection");
                        Reply::Close
                    }
                };
                let close = matches!(reply, Reply::Close);
                if tx.send(reply).await.is_err() || close {
                    return;
                }
            }
            Ok(Parsed::Incomplete(missing)) => {
                buf.reserve(missing.clamp(MIN_READ, MAX_READ));
                tokio::select! {
                    read = reader.read_buf(&mut buf) => match read {
                        Ok(0) => {
                            if !buf.is_empty() {
                                tracing::debug!(buffered = buf.len(), "client closed mid-request");
                            }
                            return;
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::debug!(error = %e, "read failed");
                            return;
                        }
                    },
                    _ = shutdown.changed() => return,
                    // The writer stopped (the client went away): stop reading too.
                    () = tx.closed() => return,
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "closing connection");
                return;
            }
        }
    }
}

async fn write_loop(mut writer: OwnedWriteHalf, mut rx: mpsc::Receiver<Reply>) {
    let mut next: Option<Reply> = None;
    loop {
        let reply = match next.take() {
            Some(reply) => reply,
            None => match rx.recv().await {
                Some(reply) => reply,
                None => break,
            },
        };
        let mut out = match resolve(reply).await {
            Resolved::Frame(frame) => frame,
            Resolved::Nothing => continue,
            Resolved::Close => break,
        };
        // Replies that are already complete go out in the same write.
        while out.remaining_len() < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(Reply::Now(frame)) => out.append(frame),
                Ok(Reply::Nothing) => {}
                Ok(other) => {
                    next = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        if let Err(e) = writer.write_all_buf(&mut out).await {
            tracing::debug!(error = %e, "write failed");
            break;
        }
    }
    // Dropping the receiver tells the reader to stop; shut down the write side so the
    // client sees the close after the last reply.
    drop(rx);
    if let Err(e) = writer.shutdown().await {
        tracing::debug!(error = %e, "socket shutdown failed");
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
