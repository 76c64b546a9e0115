//! pop3d
#![forbid(unsafe_code)]
fn main() {}
