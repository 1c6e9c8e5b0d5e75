//! How a command ends: the exit codes a script can tell apart, each with
//! the message that explains it.

use std::process::ExitCode;

use crate::http::client::CallError;

/// The exit codes, one per kind of failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Anything else went wrong: a file, the store, a node that cannot start.
    Failed = 1,
    /// The command line is wrong: a missing or bad flag or value.
    Usage = 2,
    /// `get` of a key the node does not hold, `del` of a key it did not
    /// hold, or a sync id it does not know.
    NotFound = 3,
    /// The node answered with an error: credentials refused, a bad key,
    /// a value too large, shutting down.
    Refused = 4,
    /// No node answered at the address: connection refused, no such
    /// host, or no answer in time.
    CannotConnect = 5,
    /// `sync` ran, but not every node of the ring holds the same data.
    NotConverged = 6,
}

/// The exit codes as `--help` lists them (README's table says the same;
/// a test holds the two together).
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  failed: anything else (a file, the store, a node that cannot start)
  2  usage: a missing or bad flag or value
  3  not found: get of an absent key, del of a key the node did not hold
  4  refused: the node answered with an error (credentials, bad key, too large)
  5  cannot connect: no node answers at the address (is it running?)
  6  not converged: sync ran, but the ring does not hold the same data";

/// A command's failure: what to print and which code to exit with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Which kind of failure.
    pub exit: Exit,
    /// What went wrong and, where it can, what to do.
    pub message: String,
}

impl Failure {
    /// A failure of kind `exit`.
    pub fn new(exit: Exit, message: impl Into<String>) -> Failure {
        Failure {
            exit,
            message: message.into(),
        }
    }

    /// A wrong command line.
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure::new(Exit::Usage, message)
    }

    /// The process's exit code.
    pub fn code(&self) -> ExitCode {
        ExitCode::from(self.exit as u8)
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure::new(Exit::Failed, message)
    }
}

impl From<CallError> for Failure {
    fn from(e: CallError) -> Failure {
        let exit = if e.unreachable {
            Exit::CannotConnect
        } else {
            Exit::Failed
        };
        Failure::new(exit, e.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_help_lists_every_exit_code_once() {
        for exit in [
            Exit::Failed,
            Exit::Usage,
            Exit::NotFound,
            Exit::Refused,
            Exit::CannotConnect,
            Exit::NotConverged,
        ] {
            let line = format!("\n  {}  ", exit as u8);
            assert_eq!(
                EXIT_CODES_HELP.matches(&line).count(),
                1,
                "{exit:?} in {EXIT_CODES_HELP}"
            );
        }
    }
}
