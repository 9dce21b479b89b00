//! The `bakery-agent` binary: a thin shell over [`bakery_agent::cli`].

fn main() -> std::process::ExitCode {
    bakery_agent::cli::main()
}
