//! The process suite, run once per start method (filled in below).
fn main() {}
