fn main() -> std::process::ExitCode {
    maos_cli::main()
}
