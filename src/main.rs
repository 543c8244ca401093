fn main() -> std::process::ExitCode {
    deltawkv::cli::main()
}
