//! `pop3`: fetch mail over POP3.

fn main() {}
