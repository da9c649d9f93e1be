//! The `nusomi` command line; everything lives in [`nusomi_export::cli`].

fn main() -> std::process::ExitCode {
    nusomi_export::cli::main()
}
