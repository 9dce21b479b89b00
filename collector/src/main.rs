//! The `bakery-collector` binary: a thin shell over [`bakery_collector::cli`].

fn main() -> std::process::ExitCode {
    bakery_collector::cli::main()
}
