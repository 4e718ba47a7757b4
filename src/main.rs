//! The `etcd-rescue` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    etcd_rescue::cli::main()
}
