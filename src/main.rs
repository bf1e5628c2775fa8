fn main() -> std::process::ExitCode {
    exposure_monitor::cli::main()
}
