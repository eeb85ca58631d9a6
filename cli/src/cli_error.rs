//! What a client command ends with: its typed failure ([`CliError`], and
//! the process exit code each kind maps to) and the JSON answer to print
//! ([`out`]). Shared by every command group.

use serde::Serialize;
use serde_json::Value;

/// Failure of a client command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A call to the server failed.
    #[error(transparent)]
    Api(#[from] metalcast_operator_api::Error),
    /// Bad local input.
    #[error("{0}")]
    Input(String),
    /// A deployment ended with failed nodes.
    #[error("{0}")]
    Failed(String),
    /// The event stream of a running deployment was lost before its end:
    /// the deployment goes on in the server, `metalcast deploy watch ID`
    /// reattaches. Exit code 3, as for a server that cannot be reached.
    #[error(
        "lost the event stream of deployment {id} before it ended ({reason}); it goes on in the server: \
         follow it again with `metalcast deploy watch {id}`"
    )]
    StreamLost {
        /// The deployment.
        id: i64,
        /// What happened to the stream.
        reason: String,
    },
}

impl CliError {
    /// Process exit code (see the `cli` module docs).
    pub fn exit_code(&self) -> i32 {
        use metalcast_operator_api::Error as E;
        match self {
            CliError::Api(E::Transport { .. } | E::BadUrl(_)) => 3,
            CliError::Api(E::Api { status: 401 | 403, .. }) => 4,
            CliError::Api(E::Api { status: 404, .. }) => 5,
            CliError::Api(E::Api { status: 409, .. } | E::OtherImage { .. }) => 6,
            CliError::Api(E::Api { .. }) => 7,
            CliError::Api(E::Build(_) | E::DotSegment(_) | E::Decode { .. } | E::Stream(_) | E::File { .. }) => 1,
            CliError::Input(_) => 1,
            CliError::Failed(_) => 8,
            CliError::StreamLost { .. } => 3,
        }
    }
}

/// An answer to print.
pub fn out<T: Serialize>(answer: T) -> Result<Value, CliError> {
    serde_json::to_value(answer).map_err(|e| CliError::Input(format!("cannot encode the answer: {e}")))
}
