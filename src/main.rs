//! The `artifact-upload-handler` binary: parse the command line, set up
//! logging, run the command, and turn its outcome into an exit status.

use std::process::ExitCode;

fn main() -> ExitCode {
    artifact_upload_handler::cli::main()
}
