//! The transport's error type.

/// Errors of the sender and receiver.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What we were doing.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Bad configuration or session spec.
    #[error("configuration: {0}")]
    Config(String),
    /// The bundle or manifest is unusable.
    #[error(transparent)]
    Bundle(#[from] metalcast_image::BundleError),
    /// Nothing that advanced the session (a new packet of the sender, or a
    /// symbol the receiver lacked) arrived for too long.
    #[error("no data for {secs}s: giving up ({blocks_left} blocks still missing; {detail})")]
    Timeout {
        /// Seconds waited.
        secs: u64,
        /// Blocks not yet written.
        blocks_left: usize,
        /// The first missing block and what the receiver had of it.
        detail: String,
    },
    /// The session was stopped by its owner (`SenderConfig::cancel`).
    #[error("session cancelled with {receivers_left} receivers unfinished")]
    Cancelled {
        /// Receivers that had not reported done.
        receivers_left: usize,
    },
    /// The session took longer than its deadline.
    #[error("session deadline of {secs}s passed with {receivers_left} receivers unfinished")]
    Deadline {
        /// The deadline.
        secs: u64,
        /// Receivers that had not reported done.
        receivers_left: usize,
    },
    /// A stored chunk of the image to send does not match its manifest: the
    /// sender refuses to send the image (receivers could never verify it).
    #[error("refusing to send the image: chunk {chunk} does not match the manifest: {source}")]
    CorruptChunk {
        /// Chunk index in the manifest.
        chunk: usize,
        /// What the check found.
        #[source]
        source: metalcast_image::BundleError,
    },
    /// One block decoded to a chunk that failed the manifest's hash
    /// [`crate::receiver::MAX_HASH_FAILURES`] times, each time from fresh
    /// symbols: the image being sent is corrupt, and asking again would loop
    /// forever.
    #[error(
        "block {block} (chunk {chunk}) failed the manifest's hash {failures} times: the image being sent is corrupt"
    )]
    CorruptBlock {
        /// Block number in the session.
        block: usize,
        /// Chunk index in the manifest.
        chunk: usize,
        /// Hash failures of that block.
        failures: u32,
    },
    /// The receive was stopped by its owner (`ReceiverConfig::cancel`).
    #[error("receive cancelled with {blocks_left} blocks still missing")]
    ReceiveCancelled {
        /// Blocks not yet written.
        blocks_left: usize,
    },
    /// Writing decoded data failed.
    #[error("writing chunk {chunk}: {source}")]
    Sink {
        /// Chunk index.
        chunk: usize,
        /// The sink's error.
        #[source]
        source: metalcast_image::BundleError,
    },
}

impl TransportError {
    /// Wraps an I/O error with what we were doing.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        TransportError::Io { what: what.into(), source }
    }
}
