//! Framing on a connection's stream: each message is a 4-byte big-endian
//! length, then that many bytes. The length is checked against
//! [`MAX_MESSAGE`] before anything is allocated. A zero length is a no-op
//! frame (the dialler sends one to open the stream).

use quinn::{ReadExactError, RecvStream, SendStream};

use crate::sync::message::MAX_MESSAGE;

/// Why a stream's framing broke. The connection is closed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// A length prefix over the wire limit (nothing was allocated for it).
    #[error("frame of {len} bytes is over the limit of {max}")]
    TooLarge {
        /// The length announced.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// The stream ended in the middle of a frame.
    #[error("stream ended inside a frame")]
    Truncated,
    /// Reading failed (the connection was lost or closed).
    #[error("read: {0}")]
    Read(String),
    /// Writing failed (the connection was lost or closed).
    #[error("write: {0}")]
    Write(String),
}

fn read_err(e: ReadExactError, at_start: bool) -> FrameError {
    match e {
        ReadExactError::FinishedEarly(n) if !(at_start && n == 0) => FrameError::Truncated,
        ReadExactError::FinishedEarly(_) => FrameError::Read("stream finished".into()),
        ReadExactError::ReadError(e) => FrameError::Read(e.to_string()),
    }
}

/// Reads the next frame's message (an empty one for a no-op frame).
pub(crate) async fn read(recv: &mut RecvStream) -> Result<Vec<u8>, FrameError> {
    let mut header = [0u8; 4];
    recv.read_exact(&mut header)
        .await
        .map_err(|e| read_err(e, true))?;
    let len = u32::from_be_bytes(header);
    check(len)?;
    // `check` bounds `len` by MAX_MESSAGE, so this allocation is bounded.
    let mut message = vec![0u8; len as usize];
    recv.read_exact(&mut message)
        .await
        .map_err(|e| read_err(e, false))?;
    Ok(message)
}

/// Refuses a length prefix over [`MAX_MESSAGE`].
pub(crate) fn check(len: u32) -> Result<(), FrameError> {
    if u64::from(len) > MAX_MESSAGE as u64 {
        return Err(FrameError::TooLarge {
            len: u64::from(len),
            max: MAX_MESSAGE,
        });
    }
    Ok(())
}

/// Writes `message` as one frame.
pub(crate) async fn write(send: &mut SendStream, message: &[u8]) -> Result<(), FrameError> {
    let len = u32::try_from(message.len())
        .ok()
        .filter(|l| check(*l).is_ok())
        .ok_or(FrameError::TooLarge {
            len: message.len() as u64,
            max: MAX_MESSAGE,
        })?;
    send.write_all(&len.to_be_bytes())
        .await
        .map_err(|e| FrameError::Write(e.to_string()))?;
    send.write_all(message)
        .await
        .map_err(|e| FrameError::Write(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit() {
        assert!(check(MAX_MESSAGE as u32).is_ok());
        assert!(matches!(
            check(MAX_MESSAGE as u32 + 1),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(check(u32::MAX).is_err());
    }
}
