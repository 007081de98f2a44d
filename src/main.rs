//! The `lipsync` command line tool: see `lipsync --help`.

fn main() -> std::process::ExitCode {
    lipsync::cli::main()
}
