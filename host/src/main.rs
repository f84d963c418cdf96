fn main() -> std::process::ExitCode {
    meshhost::cli::main()
}
