//! The one error type of the `lipsync` crate. Every variant says what went wrong and, where there is one,
//! what the user can do about it.

use std::path::PathBuf;

/// Errors of the lipsync engine, its media I/O and its command line tool.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A video frame whose description does not match its data (size, strides, format).
    #[error("invalid video frame: {0}")]
    InvalidFrame(String),

    /// A frame or an audio block arrived without a timestamp where one is required.
    #[error("{what} has no timestamp: timestamp the stream upstream (e.g. `do-timestamp=true` on the source)")]
    MissingTimestamp { what: &'static str },

    /// A pixel format the engine does not handle.
    #[error("unsupported pixel format {0}: convert to RGB, RGBA, BGRx, BGRA, I420 or NV12 (e.g. with videoconvert)")]
    UnsupportedFormat(String),

    /// A renderer failed on one frame; the engine sends the fallback frame instead.
    #[error("renderer `{renderer}` failed: {reason}")]
    Render { renderer: &'static str, reason: String },

    /// The render worker thread is gone (it panicked or was shut down).
    #[error("the render worker has stopped: {0}")]
    WorkerStopped(String),

    /// An audio capture device could not be opened or failed while running.
    #[error("audio device: {0}")]
    AudioDevice(String),

    /// A model file that cannot be used (corrupted, truncated, an unsupported operator, wrong checksum).
    #[error("model: {0}")]
    Model(String),

    /// A tensor operation failed (a bug or an unsupported device).
    #[error("tensor: {}", candle_message(.0))]
    Tensor(#[from] candle_core::Error),

    /// A media pipeline (decoding, encoding, capture, RTP) failed.
    #[error("media pipeline: {0}")]
    Media(String),

    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    /// A command line or configuration value that cannot be used.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The command was stopped by a signal (SIGINT, SIGTERM) and ended early, saying what it kept.
    #[error("interrupted: {0}")]
    Interrupted(String),
}

/// A candle error's message, without the backtrace candle attaches to it when `RUST_BACKTRACE` is set (a
/// user needs the message; writing the backtrace out also resolves its symbols, which costs 100 MB).
pub fn candle_message(e: &candle_core::Error) -> String {
    match e {
        candle_core::Error::WithBacktrace { inner, .. } => candle_message(inner),
        candle_core::Error::Context { inner, context } => format!("{context}: {}", candle_message(inner)),
        other => other.to_string(),
    }
}

/// `Result` with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
