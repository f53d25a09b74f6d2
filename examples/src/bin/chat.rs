//! `chat`: the example terminal chat client (see `sessionkit_examples::chat`).

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    sessionkit_examples::chat::main()
}
