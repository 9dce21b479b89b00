//! What a stream sends, in two queues: live messages go out before any replayed one waiting.
//!
//! The request stream of a session takes from the live queue first and from the replay queue
//! only when no live message waits (bakery.proto, contract point 8: a live sample is sent as
//! soon as it is taken, never behind the backlog). The replay queue holds one message, so a
//! live one is never more than one replayed message (and what HTTP/2 already carries) behind.
//! Each queue keeps its own order.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::mpsc;
use tokio_stream::Stream;

use super::codec::Outgoing;

/// Live messages queued for the HTTP/2 stream at most; beyond that the sender waits, so a slow
/// collector slows the sending (the spool holds the rest).
const LIVE_QUEUE: usize = 32;
/// Replayed messages queued at most.
const REPLAY_QUEUE: usize = 1;

/// Where a session puts what it sends.
pub(super) struct Outbox {
    pub(super) live: mpsc::Sender<Outgoing>,
    pub(super) replay: mpsc::Sender<Outgoing>,
}

/// The request stream tonic sends: live messages first.
pub(super) struct Requests {
    live: mpsc::Receiver<Outgoing>,
    replay: mpsc::Receiver<Outgoing>,
}

/// A new pair of queues and the stream that empties them.
pub(super) fn outbox() -> (Outbox, Requests) {
    let (live, live_rx) = mpsc::channel(LIVE_QUEUE);
    let (replay, replay_rx) = mpsc::channel(REPLAY_QUEUE);
    (Outbox { live, replay }, Requests { live: live_rx, replay: replay_rx })
}

impl Stream for Requests {
    type Item = Outgoing;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let live = self.live.poll_recv(cx);
        if let Poll::Ready(Some(message)) = live {
            return Poll::Ready(Some(message));
        }
        match (live, self.replay.poll_recv(cx)) {
            (_, Poll::Ready(Some(message))) => Poll::Ready(Some(message)),
            // Both senders dropped and both queues empty: the session closes its side.
            (Poll::Ready(None), Poll::Ready(None)) => Poll::Ready(None),
            _ => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use bakery_proto::v1 as pb;
    use tokio_stream::StreamExt;

    use super::*;

    fn gap(n: u64) -> Outgoing {
        let gap = pb::Gap { first_seq: n, last_seq: n, reason: String::new() };
        Outgoing::Message(pb::AgentMessage { kind: Some(pb::agent_message::Kind::Gap(gap)) })
    }

    #[tokio::test]
    async fn a_live_message_goes_before_a_waiting_replayed_one_and_each_queue_keeps_its_order() {
        let (outbox, mut requests) = outbox();
        outbox.replay.send(gap(1)).await.unwrap();
        assert!(outbox.replay.try_send(gap(2)).is_err(), "the replay queue holds one");
        outbox.live.send(gap(10)).await.unwrap();
        outbox.live.send(gap(11)).await.unwrap();
        let first = |m: Option<Outgoing>| match m.and_then(|m| match m {
            Outgoing::Message(m) => m.kind,
            Outgoing::Encoded(_) => None,
        }) {
            Some(pb::agent_message::Kind::Gap(g)) => g.first_seq,
            other => panic!("{other:?}"),
        };
        assert_eq!(first(requests.next().await), 10);
        assert_eq!(first(requests.next().await), 11);
        assert_eq!(first(requests.next().await), 1);
        outbox.replay.send(gap(2)).await.unwrap();
        drop(outbox);
        assert_eq!(first(requests.next().await), 2, "what was queued still goes after the close");
        assert!(requests.next().await.is_none(), "then the stream ends");
    }
}
