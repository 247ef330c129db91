//! Where an HTTP/2 client is in its byte stream, as far as header timeouts care: whether a
//! request head (a HEADERS frame and its CONTINUATIONs) is half sent.
//!
//! On HTTP/2 a slow request head is not a slow connection: other streams may be in flight
//! while one stream's header block trickles in, one byte a second. The h2 layer bounds its
//! size, not its time. The server therefore follows the frame headers of what the client sends
//! (the 24-byte preface, then 9-byte frame headers whose lengths say how much payload to skip;
//! payloads are never looked at) and knows when a header block, or any frame header, is
//! incomplete, and since when. The cost is a few comparisons per frame.

use tokio::time::Instant;

/// The client connection preface (RFC 9113 §3.4), skipped before the first frame.
const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const PUSH_PROMISE: u8 = 0x5;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;

/// The frame tracker of one HTTP/2 connection.
#[derive(Debug)]
pub(crate) struct FrameWatch {
    /// Preface bytes still to skip.
    preface: usize,
    /// The frame header read so far.
    header: [u8; FRAME_HEADER_LEN],
    header_len: usize,
    /// Payload bytes of the current frame still to come.
    payload_left: usize,
    /// The current frame belongs to a header block.
    in_header_frame: bool,
    /// A header block was begun without END_HEADERS: CONTINUATION frames are due.
    block_open: bool,
    /// Since when a request head (or a frame header) has been incomplete.
    pending_since: Option<Instant>,
}

impl FrameWatch {
    pub(crate) fn new() -> Self {
        Self {
            preface: PREFACE_LEN,
            header: [0; FRAME_HEADER_LEN],
            header_len: 0,
            payload_left: 0,
            in_header_frame: false,
            block_open: false,
            pending_since: None,
        }
    }

    /// Since when a request head has been incomplete, if one is.
    pub(crate) fn head_pending_since(&self) -> Option<Instant> {
        self.pending_since
    }

    /// Follows `bytes`, the next ones the client sent, read at `now`.
    pub(crate) fn saw(&mut self, mut bytes: &[u8], now: Instant) {
        let skip = self.preface.min(bytes.len());
        self.preface -= skip;
        bytes = &bytes[skip..];
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let skip = self.payload_left.min(bytes.len());
                self.payload_left -= skip;
                bytes = &bytes[skip..];
                continue;
            }
            // A frame header, perhaps in pieces.
            if self.header_len == 0 && self.pending_since.is_none() {
                self.pending_since = Some(now);
            }
            let take = (FRAME_HEADER_LEN - self.header_len).min(bytes.len());
            self.header[self.header_len..self.header_len + take].copy_from_slice(&bytes[..take]);
            self.header_len += take;
            bytes = &bytes[take..];
            if self.header_len < FRAME_HEADER_LEN {
                break;
            }
            self.header_len = 0;
            let [l0, l1, l2, kind, flags, ..] = self.header;
            self.payload_left = usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2);
            self.in_header_frame = matches!(kind, HEADERS | PUSH_PROMISE | CONTINUATION);
            if self.in_header_frame {
                self.block_open = flags & END_HEADERS == 0;
            }
        }
        // Nothing half sent: no frame header in pieces, no header frame's payload to come, no
        // header block awaiting its CONTINUATION.
        let head_pending = self.header_len > 0
            || (self.in_header_frame && self.payload_left > 0)
            || self.block_open;
        if !head_pending {
            self.pending_since = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut out = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            kind,
            flags,
            0,
            0,
            0,
            1,
        ];
        out.extend_from_slice(payload);
        out
    }

    #[tokio::test(start_paused = true)]
    async fn a_header_block_sent_in_pieces_is_pending_from_its_first_byte() {
        let mut watch = FrameWatch::new();
        let t0 = Instant::now();
        watch.saw(PREFACE, t0);
        watch.saw(&frame(0x4, 0, &[0; 6]), t0); // SETTINGS, whole
        assert_eq!(watch.head_pending_since(), None);
        let headers = frame(HEADERS, END_HEADERS, &[0x82; 20]);
        let t1 = t0 + Duration::from_secs(1);
        watch.saw(&headers[..3], t1);
        assert_eq!(watch.head_pending_since(), Some(t1));
        watch.saw(&headers[3..15], t1 + Duration::from_secs(5));
        assert_eq!(
            watch.head_pending_since(),
            Some(t1),
            "progress does not re-arm it"
        );
        watch.saw(&headers[15..], t1 + Duration::from_secs(6));
        assert_eq!(watch.head_pending_since(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_header_block_stays_pending_until_its_last_continuation() {
        let mut watch = FrameWatch::new();
        let t0 = Instant::now();
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(HEADERS, 0, &[0x82; 5]));
        watch.saw(&bytes, t0);
        assert_eq!(watch.head_pending_since(), Some(t0));
        // A PING in between does not end it (it is a protocol error, the h2 layer's to refuse).
        watch.saw(
            &frame(CONTINUATION, 0, &[0x84; 5]),
            t0 + Duration::from_secs(1),
        );
        assert_eq!(watch.head_pending_since(), Some(t0));
        watch.saw(
            &frame(CONTINUATION, END_HEADERS, &[0x84; 5]),
            t0 + Duration::from_secs(2),
        );
        assert_eq!(watch.head_pending_since(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_data_frame_in_pieces_is_not_a_pending_head() {
        let mut watch = FrameWatch::new();
        let t0 = Instant::now();
        let data = frame(0x0, 0, &[7; 100]);
        let mut bytes = PREFACE.to_vec();
        bytes.extend_from_slice(&data[..50]);
        watch.saw(&bytes, t0);
        assert_eq!(watch.head_pending_since(), None);
        watch.saw(&data[50..], t0 + Duration::from_secs(100));
        assert_eq!(watch.head_pending_since(), None);
    }
}
