//! The `bakery-demo` binary: a thin shell over [`bakery_demo::cli`].

fn main() -> std::process::ExitCode {
    bakery_demo::cli::main()
}
