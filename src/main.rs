//! The leadrouter binary: parse the command line and hand over to the library.

// mimalloc rather than glibc malloc: a SubmitLead makes a few hundred small allocations
// (proto maps, decision-record lines), and glibc's malloc/free were ~15 % of the server's
// CPU under load (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match leadrouter::cli::run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
