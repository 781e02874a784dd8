//! `hwameictl`: the command line client of HwameiStor (see the `hwameistor-cli` crate).

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr();
    let code = hwameistor_cli::main_with_args(std::env::args_os(), &mut out, &mut err).await;
    std::process::exit(code);
}
