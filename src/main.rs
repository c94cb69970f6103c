//! The `ebmc` binary: a thin wrapper over the library's CLI module.
fn main() -> std::process::ExitCode {
    ebmc::cli::main()
}
