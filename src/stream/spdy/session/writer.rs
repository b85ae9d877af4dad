//! The writer task: drains the outgoing FIFO, compresses header blocks in
//! wire order and writes.

use super::*;

pub(super) async fn writer_task<W: AsyncWrite + Unpin>(shared: Arc<Shared>, mut wr: W) {
    let mut rx = shared.deadline.subscribe();
    let mut encoder = HeaderEncoder::new();
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut dirty = false;
    let result: io::Result<()> = async {
        loop {
            let notified = shared.writer_wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let mut goaway = None;
            {
                let mut st = shared.lock();
                for (stream_id, delta) in st.pending_window_updates.drain(..) {
                    Frame::WindowUpdate { stream_id, delta }.encode(&mut buf);
                }
                let mut freed = false;
                while buf.len() < 64 * 1024 {
                    let Some(out) = st.queue.pop_front() else {
                        break;
                    };
                    st.queued_cost -= out.cost();
                    freed = true;
                    match out {
                        Out::Frame(f) => f.encode(&mut buf),
                        Out::Reply {
                            stream_id,
                            fin,
                            headers,
                        } => Frame::SynReply {
                            stream_id,
                            fin,
                            header_block: encoder.encode(&headers).into(),
                        }
                        .encode(&mut buf),
                        Out::Open { stream_id, headers } => {
                            Frame::open(stream_id, encoder.encode(&headers).into()).encode(&mut buf)
                        }
                    }
                }
                if freed {
                    shared.writers.notify_waiters();
                    shared.reader_wake.notify_one();
                }
                if buf.is_empty()
                    && let Some(status) = st.closing
                {
                    goaway = Some(Frame::GoAway {
                        last_good_stream_id: st.last_good_id,
                        status,
                    });
                }
            }
            if !buf.is_empty() {
                bounded(&mut rx, wr.write_all(&buf)).await?;
                buf.clear();
                dirty = true;
                shared.lock().last_activity = Instant::now();
                continue;
            }
            if dirty {
                bounded(&mut rx, wr.flush()).await?;
                dirty = false;
                continue;
            }
            if let Some(goaway) = goaway {
                goaway.encode(&mut buf);
                bounded(&mut rx, wr.write_all(&buf)).await?;
                bounded(&mut rx, wr.flush()).await?;
                bounded(&mut rx, wr.shutdown()).await?;
                return Ok(());
            }
            notified.await;
        }
    }
    .await;

    let mut st = shared.lock();
    if let Err(e) = result {
        tracing::debug!(error = %e, "SPDY session: write side failed");
        shared.abort(&mut st);
    }
    st.writer_done = true;
    st.queue.clear();
    st.queued_cost = 0;
    shared.wake_all(&st);
    shared.writer_finished.notify_waiters();
}
