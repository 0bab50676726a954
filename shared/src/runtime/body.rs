//! Reading an event body: every host reads at most `runtime.max_body_bytes + 1` bytes,
//! enough to tell a body over the limit without buffering it all; the one size check is
//! then [`super::invoke`]'s (the HTTP host's own, for the body it wraps in an envelope).
//! After it nothing measures again (see `events::Webhook`).

use std::io::Read;

/// At most `max + 1` bytes of `r` (a file, stdin).
pub(crate) fn read_limited(r: impl Read, max: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    r.take(max as u64 + 1).read_to_end(&mut buf)?;
    Ok(buf)
}

/// At most `max + 1` bytes of a runtime API's response body.
pub(crate) async fn read_limited_response(
    mut r: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, reqwest::Error> {
    let mut buf = Vec::new();
    while let Some(chunk) = r.chunk().await? {
        let room = (max + 1).saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if buf.len() > max {
            break;
        }
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_stops_one_byte_past_the_limit() {
        let big = vec![b'x'; 10_000];
        assert_eq!(read_limited(&big[..], 100).unwrap().len(), 101);
        assert_eq!(read_limited(&b"{}"[..], 100).unwrap(), b"{}");
    }
}
