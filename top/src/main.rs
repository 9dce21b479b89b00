//! The `bakery-top` binary: everything lives in the library ([`bakery_top::cli`]), so tests drive
//! the same code.

fn main() -> std::process::ExitCode {
    bakery_top::cli::main()
}
